"""A generate run as written in a TOML file: the topics, who talks, and what to drop.

The file is seed 003's `example.json` grown up: a motion template with `{word}`
instead of prompt lines, words inline and/or from a file (one per line), the same
`exclude` stems, plus the town-hall settings (participants, policy, turns) that a
debate uses. Relative paths in the file are read relative to the file, so a config
and its word list can travel together.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from townhall.engine.base import SamplingOverrides
from townhall.errors import ConfigError, NotFoundError, validation_message
from townhall.domain.spec import PolicyName, PromptFormatName, StrategyName, TownHallSpec

WORD = "{word}"
OutputFormat = Literal["jsonl", "sharegpt", "txt"]
OUTPUT_FORMATS: tuple[str, ...] = ("jsonl", "sharegpt", "txt")
_SEED_SPACE = 2**31 - 1
MAX_PARALLEL = 256
# Fields that change how a run is carried out or rendered, never which conversations it
# holds: a resumed run with another `parallel` or `assistant` goes on with the same topics.
_NOT_IN_FINGERPRINT = {"name", "words", "words_file", "out", "format", "assistant", "parallel"}


class GenerateConfig(BaseModel):
    """Everything `townhall generate` needs besides the engine, the store and the output file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="generate", min_length=1, max_length=80)
    motion: str = Field(min_length=1)
    title: str = "{word}"
    words: list[str] = Field(default_factory=list)
    words_file: Path | None = None
    exclude: list[str] = Field(default_factory=list)
    participants: list[str] = Field(min_length=1)
    moderator: str | None = None
    policy: PolicyName = "round_robin"
    turns: int = Field(default=6, ge=1, le=200)
    min_turns: int = Field(default=2, ge=0)
    closing_phrase: str | None = None
    seed: int | None = Field(default=None, ge=0)
    sampling: SamplingOverrides = SamplingOverrides()
    n_ctx: int = Field(default=2048, ge=128)
    context_strategy: StrategyName = "truncate"
    prompt_format: PromptFormatName = "auto"
    agents_dir: Path | None = None
    format: OutputFormat = "jsonl"
    out: Path | None = None
    # Whose turns are `assistant` in the one-line-per-conversation output (jsonl, sharegpt);
    # None: the moderator if there is one, else the last participant (`assistant_name`).
    assistant: str | None = None
    # The system message of every conversation written, `{word}` filled in. None: the assistant
    # persona's own description, then the motion, which says what the conversation is.
    system: str | None = Field(default=None, min_length=1, max_length=2000)
    # Conversations in flight at once; None: chosen from the machine (`generate.parallel`).
    parallel: int | None = Field(default=None, ge=1, le=MAX_PARALLEL)

    @field_validator("motion")
    @classmethod
    def _motion_has_word(cls, value: str) -> str:
        if WORD not in value:
            raise ValueError(f"must contain {WORD}, where each topic word goes")
        return value

    @field_validator("title")
    @classmethod
    def _title_one_line(cls, value: str) -> str:
        if "\n" in value.strip() or not value.strip():
            raise ValueError("must be one non-empty line")
        return value.strip()

    @field_validator("words")
    @classmethod
    def _words_one_line(cls, value: list[str]) -> list[str]:
        for word in value:
            if "\n" in word.strip() or "\r" in word.strip():
                raise ValueError(f"{word!r} spans lines; each word must be one line")
        return [w.strip() for w in value if w.strip()]

    @field_validator("exclude")
    @classmethod
    def _stems(cls, value: list[str]) -> list[str]:
        stems = [s.strip() for s in value if s.strip()]
        if len(stems) != len(value):
            raise ValueError("stems must not be empty")
        return stems

    @model_validator(mode="after")
    def _consistent(self) -> GenerateConfig:
        if self.min_turns > self.turns:
            raise ValueError(f"min_turns ({self.min_turns}) is more than turns ({self.turns})")
        if self.assistant is not None and self.assistant not in self.persona_names():
            raise ValueError(
                f"assistant {self.assistant!r} is not one of the speakers ({', '.join(self.persona_names())})"
            )
        return self

    # -- derived ---------------------------------------------------------------------
    def fingerprint(self) -> str:
        """What makes two runs "the same config" for resuming: everything but the word list and output.

        Adding words to a list or renaming the file resumes the old output; changing
        who talks, the motion or the sampling starts the topics over.
        """
        # A config without `system` keeps the fingerprint it had before the field existed.
        unset = {"system"} if self.system is None else set()
        data = self.model_dump(mode="json", exclude=_NOT_IN_FINGERPRINT | unset)
        blob = json.dumps(data, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def spec_for(self, word: str, seed: int | None) -> TownHallSpec:
        """The town hall for one topic: the motion and title with the word filled in.

        No ballot: a training conversation ends at its last turn, without the probes, the
        chair's announcement and the minutes a debate ends with.
        """
        return TownHallSpec(
            title=fill(self.title, word),
            motion=fill(self.motion, word),
            participants=list(self.participants),
            moderator=self.moderator,
            policy=self.policy,
            max_turns=self.turns,
            closing_phrase=self.closing_phrase,
            seed=seed,
            sampling=self.sampling,
            n_ctx=self.n_ctx,
            context_strategy=self.context_strategy,
            prompt_format=self.prompt_format,
            ballot=False,
        )

    def system_for(self, word: str) -> str | None:
        """The configured system message for topic `word` (None: made from the persona, `chats.chat`)."""
        return fill(self.system, word) if self.system is not None else None

    def persona_names(self) -> list[str]:
        return list(self.participants) + ([self.moderator] if self.moderator else [])

    def assistant_name(self) -> str:
        """Whose turns train the assistant: `assistant`, else the moderator (the one who
        leads, like a teacher), else the last participant (who answers the first)."""
        return self.assistant or self.moderator or self.participants[-1]


def fill(template: str, word: str) -> str:
    """Put `word` where `{word}` is; no other braces are special (a motion may contain `{}`)."""
    return template.replace(WORD, word)


def conversation_seed(base: int, word: str, attempt: int) -> int:
    """A stable seed per (run seed, topic, attempt): a seeded run repeats, a retry differs."""
    digest = hashlib.sha256(f"{base}\x00{word}\x00{attempt}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % _SEED_SPACE


def stem_pattern(stems: list[str]) -> re.Pattern[str] | None:
    """Case-insensitive match of any stem at the start of a word ("kill" hits "killing", not "skill")."""
    if not stems:
        return None
    alternatives = "|".join(re.escape(s) for s in sorted(stems, key=len, reverse=True))
    return re.compile(rf"(?<!\w)({alternatives})", re.IGNORECASE)


def read_words_file(path: Path) -> list[str]:
    """One word (or phrase) per line; blank lines and `#` comments are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFoundError(f"words_file {path}: no such file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"words_file {path}: not UTF-8 text") from None
    except OSError as error:
        raise ConfigError(f"words_file {path}: cannot read: {error.strerror or error}") from None
    words = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            words.append(line)
    return words


def topics(config: GenerateConfig) -> list[str]:
    """The inline words, then the file's, each once (case-insensitively), in order."""
    words = list(config.words)
    if config.words_file is not None:
        words += read_words_file(config.words_file)
    seen: set[str] = set()
    unique = []
    for word in words:
        key = word.casefold()
        if key not in seen:
            seen.add(key)
            unique.append(word)
    if not unique:
        raise ConfigError(f"{config.name}: no topics; give `words = [...]` or a `words_file` with one word per line")
    pattern = stem_pattern(config.exclude)
    if pattern is not None:
        for text, what in [(config.motion, "motion"), (config.title, "title")] + [(w, f"word '{w}'") for w in unique]:
            hit = pattern.search(text)
            if hit:
                raise ConfigError(
                    f"{config.name}: {what} contains the excluded stem '{hit.group(1)}', so every such "
                    "conversation would be dropped; change one of them"
                )
    return unique


def example_config_path(name: str) -> Path | None:
    """A shipped generate config by name (`student_teacher`), from examples/generate/."""
    from townhall.paths import data_dir

    path = data_dir("examples") / "generate" / f"{name.removesuffix('.toml')}.toml"
    return path if path.is_file() else None


def resolve_config_path(path: Path) -> Path:
    """The file itself if it exists, else a shipped example of that name."""
    path = Path(path)
    if path.is_file():
        return path
    if path.parent == Path(".") and (example := example_config_path(path.name)) is not None:
        return example
    raise NotFoundError(f"{path}: no such generate config file (or shipped example)")


def load_config(path: Path, **overrides: Any) -> GenerateConfig:
    """Read a generate TOML file; non-None `overrides` (from flags) replace its fields."""
    from townhall.domain.personas import read_toml

    path = resolve_config_path(path)
    data = read_toml(path)
    data.setdefault("name", path.stem)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        config = GenerateConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(validation_message(error, str(path))) from None
    base = path.resolve().parent
    updates: dict[str, Path] = {}
    for field in ("words_file", "agents_dir"):
        value = getattr(config, field)
        if value is not None and overrides.get(field) is None and not value.is_absolute():
            updates[field] = base / value
    if config.out is not None and overrides.get("out") is None and not config.out.is_absolute():
        updates["out"] = base / config.out
    return config.model_copy(update=updates) if updates else config


def default_out(config: GenerateConfig) -> Path:
    """`<name>.jsonl` (or `.txt`) in the current folder when neither flag nor file names one."""
    suffix = ".txt" if config.format == "txt" else ".jsonl"
    return Path.cwd() / f"{config.name}{suffix}"
