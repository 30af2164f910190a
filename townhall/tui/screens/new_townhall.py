"""The new-town-hall dialog: motion, participants from the roster, policy, turns, model.

The models found on the machine (`townhall models`) are offered in a list with their facts;
picking one writes its name into the model field, where a path or any other name can be typed.

Everything the user types is validated here, through the same pydantic models the
files use, and a problem is shown as one line inside the dialog, so a typo never
starts a broken debate or closes the dialog with the input lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, get_args

from pydantic import ValidationError
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, SelectionList, Static

from townhall.engine.factory import EngineConfig
from townhall.errors import TownhallError, validation_message
from townhall.domain.personas import Persona
from townhall.domain.spec import PolicyName, TownHallSpec
from townhall.debate.session import SessionPlan

if TYPE_CHECKING:
    from townhall.engine.discovery import FoundModel


def _persona_label(persona: Persona) -> Text:
    text = Text()
    if persona.emoji:
        text.append(persona.emoji + " ")
    text.append(persona.name, style="bold")
    text.append(" — " + persona.title, style="dim")
    if persona.moderator:
        text.append(" (moderator)", style="italic")
    return text


@dataclass(frozen=True)
class NewTownhall:
    """What the dialog returns: the town hall to run, and the model when the user picked another."""

    plan: SessionPlan
    engine_config: EngineConfig | None = None


class NewTownhallScreen(ModalScreen["NewTownhall | None"]):
    """Returns a `NewTownhall`, or None when cancelled."""

    DEFAULT_CSS = """
    NewTownhallScreen { align: center middle; }
    NewTownhallScreen > Vertical {
        width: 90; height: auto; max-height: 95%; border: thick $primary; background: $surface; padding: 1 2 0 2;
    }
    NewTownhallScreen #nt-title { text-style: bold; color: $primary; margin-bottom: 1; }
    NewTownhallScreen Label { text-style: bold; }
    NewTownhallScreen SelectionList { height: 10; }
    NewTownhallScreen #nt-row { height: auto; }
    NewTownhallScreen #nt-row > Vertical { width: 1fr; height: auto; }
    NewTownhallScreen #nt-error { color: $error; height: 1; }
    NewTownhallScreen #nt-buttons { height: auto; align: right middle; margin-bottom: 1; }
    NewTownhallScreen Button { margin-left: 2; }
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="townhall.new_cancel"),
        Binding("ctrl+s", "start", "Start", id="townhall.new_start"),
    ]

    def __init__(
        self, personas: Sequence[Persona], spec: TownHallSpec, model: str | None, models: Sequence[FoundModel] = ()
    ) -> None:
        super().__init__()
        self.personas = list(personas)
        self.models = [m for m in models if m.facts.usable]
        self.spec = spec
        self.model = model
        chosen = set(spec.participants) | ({spec.moderator} if spec.moderator else set())
        self._chosen = chosen

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("New town hall   (Ctrl+S starts · Esc cancels)", id="nt-title")
            yield Label("Motion")
            yield Input(self.spec.motion, placeholder="The question the town hall debates", id="nt-motion")
            yield Label("Participants (space to pick)")
            yield SelectionList[str](
                *[(_persona_label(p), p.name, p.name in self._chosen) for p in self.personas],
                id="nt-participants",
            )
            with Horizontal(id="nt-row"):
                with Vertical():
                    yield Label("Turn policy")
                    yield Select(
                        [(name.replace("_", " "), name) for name in get_args(PolicyName)],
                        value=self.spec.policy,
                        allow_blank=False,
                        id="nt-policy",
                    )
                with Vertical():
                    yield Label("Turns")
                    yield Input(str(self.spec.max_turns or ""), type="integer", id="nt-turns")
            if self.models:
                yield Label("Models found on this machine")
                yield Select(
                    [(f"{m.name} — {m.facts.summary()}", m.name) for m in self.models],
                    prompt="pick one, or type a path or name below",
                    id="nt-found",
                )
            yield Label("Model (GGUF path or name; empty = embedded Gemma 3 270M)")
            yield Input(self.model or "", placeholder="embedded model", id="nt-model")
            yield Static("", id="nt-error", markup=False)
            with Horizontal(id="nt-buttons"):
                yield Button("Cancel", id="nt-cancel")
                yield Button("Start", id="nt-start", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#nt-motion", Input).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "nt-start":
            self.action_start()
        else:
            self.action_cancel()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "nt-found" and isinstance(event.value, str):
            self.query_one("#nt-model", Input).value = event.value

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_start()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _fail(self, text: str) -> None:
        self.query_one("#nt-error", Static).update(text)

    def action_start(self) -> None:
        motion = self.query_one("#nt-motion", Input).value.strip()
        names: list[str] = list(self.query_one("#nt-participants", SelectionList).selected)
        policy = self.query_one("#nt-policy", Select).value
        turns_text = self.query_one("#nt-turns", Input).value.strip()
        model = self.query_one("#nt-model", Input).value.strip() or None
        if not motion:
            return self._fail("Motion: write the question the town hall should debate.")
        by_name = {p.name: p for p in self.personas}
        chosen = [by_name[n] for n in names if n in by_name]
        speakers = [p for p in chosen if not p.moderator]
        moderators = [p for p in chosen if p.moderator]
        if len(speakers) < 2:
            return self._fail("Participants: pick at least two (space toggles one).")
        if len(moderators) > 1:
            return self._fail("Participants: pick at most one moderator.")
        try:
            turns = int(turns_text) if turns_text else None
        except ValueError:
            return self._fail("Turns: a whole number, or empty for no limit.")
        values = self.spec.model_dump()
        if motion != self.spec.motion.strip():
            values["title"] = None  # the old title named the old motion; the record falls back to the motion
        values.update(
            motion=motion,
            participants=[p.name for p in speakers],
            moderator=moderators[0].name if moderators else None,
            policy=policy,
            max_turns=turns,
        )
        if values["policy"] == "moderator" and not moderators:
            return self._fail("Policy: 'moderator' needs a moderator among the participants.")
        try:
            spec = TownHallSpec.model_validate(values)
        except ValidationError as exc:
            return self._fail(validation_message(exc, kind=""))
        engine_config = None
        if model != self.model:
            if model is not None:
                try:
                    from townhall.engine.model_file import validate_model_file
                    from townhall.engine.model_names import resolve_model_path

                    validate_model_file(resolve_model_path(model))
                except TownhallError as exc:
                    return self._fail(f"Model: {exc}")
            engine_config = EngineConfig(model=model)
        personas = ([moderators[0]] if moderators else []) + speakers
        self.dismiss(NewTownhall(SessionPlan(spec, personas), engine_config))
