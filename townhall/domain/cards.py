"""SillyTavern / TavernAI character cards in, Townhall personas out.

Users already have characters as cards: V1 JSON (fields at the top level), V2/V3
JSON (`spec` plus a `data` object), or a PNG whose `chara` (or `ccv3`) text chunk
holds that JSON in base64. Cards are untrusted input: every field is validated and
bounded before it becomes a persona, and nothing in them is ever executed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from townhall.errors import ConfigError, NotFoundError, validation_message
from townhall.paths import user_agents_dir, write_atomic
from townhall.domain.personas import Persona, persona_from_data, persona_to_toml, slug
from townhall.domain.text import strip_narration

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CARD_KEYWORDS = ("ccv3", "chara")  # V3 cards carry both; ccv3 wins


class CardData(BaseModel):
    """The fields we use from a card; everything else in it is ignored."""

    model_config = ConfigDict(extra="ignore")

    name: str
    description: str = ""
    personality: str = ""
    scenario: str = ""
    first_mes: str = ""
    mes_example: str = ""
    tags: list[str] = []
    creator_notes: str = ""


def read_card(path: Path) -> dict[str, Any]:
    """The card's JSON object, from a .json file or a PNG's text chunk."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    if raw.startswith(PNG_SIGNATURE):
        text = _png_card_text(raw, path)
        try:
            raw = base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{path}: the card's 'chara' chunk is not valid base64") from None
    try:
        card = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not a character card (invalid JSON: {error})") from None
    if not isinstance(card, dict):
        raise ConfigError(f"{path}: not a character card (expected a JSON object)")
    return card


def _png_card_text(raw: bytes, path: Path) -> str:
    found: dict[str, str] = {}
    at = len(PNG_SIGNATURE)
    while at + 8 <= len(raw):
        (length,) = struct.unpack(">I", raw[at : at + 4])
        kind = raw[at + 4 : at + 8]
        data = raw[at + 8 : at + 8 + length]
        if len(data) < length:
            raise ConfigError(f"{path}: truncated PNG (chunk {kind.decode('latin-1', 'replace')!r} is cut short)")
        at += 12 + length
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            keyword, _, rest = data.partition(b"\x00")
            name = keyword.decode("latin-1")
            if name.casefold() not in _CARD_KEYWORDS:
                continue
            try:
                if kind == b"tEXt":
                    text = rest.decode("latin-1")
                elif kind == b"zTXt":
                    text = zlib.decompress(rest[1:]).decode("latin-1")
                else:
                    compressed, method = rest[0], rest[1]
                    _lang, _, rest2 = rest[2:].partition(b"\x00")
                    _translated, _, body = rest2.partition(b"\x00")
                    text = (zlib.decompress(body) if compressed and method == 0 else body).decode("utf-8")
            except (zlib.error, IndexError, UnicodeDecodeError):
                raise ConfigError(f"{path}: the PNG's {name!r} chunk is corrupt") from None
            found[name.casefold()] = text
        if kind == b"IEND":
            break
    for wanted in _CARD_KEYWORDS:
        if wanted in found:
            return found[wanted]
    raise ConfigError(f"{path}: this PNG holds no character card (no 'chara' text chunk)")


def card_fields(card: dict[str, Any], source: str) -> CardData:
    """Accept V1 (top-level fields) and V2/V3 (`data` object) cards."""
    body = card.get("data") if isinstance(card.get("data"), dict) else card
    try:
        return CardData.model_validate(body)
    except ValidationError as error:
        raise ConfigError(validation_message(error, source, kind="card field")) from None


_CHAR = r"\{\{\s*char\s*\}\}|<BOT>"
_USER = r"\{\{\s*user\s*\}\}|<USER>"
# W++ / PList keys that describe looks, not views: useless in a town hall and, shown
# to a small model, the source of "*Seraphina's body: pink hair...*" turns.
_APPEARANCE = {"body", "appearance", "looks", "features", "clothes", "clothing", "outfit", "attire", "wearing",
               "hair", "eyes", "height", "weight", "face", "skin", "figure", "build"}
_TRAIT_KEYS = {"personality", "traits", "personality traits", "mind", "temperament"}
_SKIP_KEYS = {"genre", "tags", "tag", "setting", "world", "character", "name"}
_SECOND_PERSON = re.compile(r"\b(you|your|yours|yourself)\b", re.IGNORECASE)


def _fill(text: str, name: str) -> str:
    text = re.sub(_CHAR, name, text, flags=re.IGNORECASE)
    text = re.sub(_USER, "the audience", text, flags=re.IGNORECASE)
    return re.sub(r"[ \t\u00a0]+", " ", text).strip()


def _one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _sentences_within(text: str, limit: int) -> str:
    """Whole sentences up to `limit` characters; one cut sentence if the first is longer."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    kept = ""
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if len(kept) + len(sentence) + 1 > limit:
            break
        kept = f"{kept} {sentence}".strip()
    return kept or _one_line(text, limit)


@dataclass
class _Parsed:
    """What a card's free text holds once its roleplay scaffolding is taken apart."""

    prose: list[str] = field(default_factory=list)
    traits: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    scenario: list[str] = field(default_factory=list)
    dialogue: list[str] = field(default_factory=list)  # the character's own example lines, raw


def _split_values(value: str) -> list[str]:
    quoted = re.findall(r'"([^"]+)"', value)
    items = quoted if quoted else re.split(r"\s*[,+/]\s*", value)
    return [i.strip(" .") for i in items if i.strip(" .")]


def _bracket_pairs(block: str) -> list[tuple[str, str]]:
    """Key/value pairs of one `[...]` block: W++ `Key= "a", "b"`, `Key("a" + "b")`, or PList `Key: v; K2: v`."""
    inner = block.strip()[1:-1].strip()
    classic = re.findall(r"([\w' ]+?)\s*\(([^()]*)\)", inner)
    if classic and "{" in inner:
        return [(k.strip(), v) for k, v in classic]
    pairs: list[tuple[str, str]] = []
    parts = re.split(r"\]\s*\[|;", inner) if ";" in inner else [inner]
    for part in parts:
        key, sep, value = part.partition("=") if "=" in part.split(":")[0] or ":" not in part else part.partition(":")
        if sep:
            pairs.append((key.strip(), value.strip()))
        elif part.strip():
            pairs.append(("", part.strip()))
    return pairs


def _take_pair(parsed: _Parsed, key: str, value: str, name: str) -> None:
    bare = re.sub(r"^.*?'s\s+", "", key).strip().casefold() if "'s " in key else key.strip().casefold()
    if bare in _APPEARANCE or bare in _SKIP_KEYS:
        return
    if bare in _TRAIT_KEYS:
        parsed.traits.extend(_split_values(value))
    elif bare == "scenario":
        parsed.scenario.append(value)
    elif not bare or bare == name.casefold():
        parsed.prose.append(f"{name} {value}" if bare else value)
    else:
        parsed.facts.append(f"{key.strip().capitalize()}: {', '.join(_split_values(value))}.")


_TAG = re.compile(r"^\s*([^:\n]{1,40}):\s*(.*)$")


def _is_char_tag(tag: str, name: str) -> bool:
    return bool(re.fullmatch(_CHAR, tag.strip(), flags=re.IGNORECASE)) or tag.strip().casefold() == name.casefold()


def _is_user_tag(tag: str) -> bool:
    return bool(re.fullmatch(_USER, tag.strip(), flags=re.IGNORECASE)) or tag.strip().casefold() in ("you", "user")


def _parse_text(text: str, name: str, parsed: _Parsed, *, dialogue_only: bool = False) -> None:
    """Sort one card field into prose, W++/PList pairs and `<START>` example dialogue."""
    in_dialogue = dialogue_only
    last_was_char = False
    block: list[str] = []  # a `[...]` block spread over lines (classic W++)
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if block or (line.startswith("[") and "]" not in line):
            block.append(line)
            if not line.endswith("]"):
                continue
            line, block = " ".join(block), []
        if re.fullmatch(r"<\s*START\s*>", line, flags=re.IGNORECASE):
            in_dialogue, last_was_char = True, False
            continue
        if line.startswith("[") and line.endswith("]"):
            in_dialogue = dialogue_only
            for key, value in _bracket_pairs(_fill(line, name)):
                _take_pair(parsed, key, value, name)
            continue
        tag = _TAG.match(line)
        if in_dialogue and tag and (_is_char_tag(tag.group(1), name) or _is_user_tag(tag.group(1))):
            last_was_char = _is_char_tag(tag.group(1), name)
            if last_was_char:
                parsed.dialogue.append(tag.group(2))
            continue
        if in_dialogue:
            if last_was_char and parsed.dialogue:
                parsed.dialogue[-1] += " " + line
            continue
        parsed.prose.append(_fill(line, name))


def _spoken(text: str, name: str) -> str:
    """The speech in a roleplay line: narration and quotes gone, placeholders filled."""

    text = strip_narration(_fill(text, name))
    text = re.sub(r"```.*?(```|$)", " ", text, flags=re.DOTALL)
    return " ".join(text.split()).strip()


def _examples(card: CardData, name: str, parsed: _Parsed) -> tuple[str, ...]:
    lines: list[str] = []
    for raw in parsed.dialogue:
        said = _sentences_within(_spoken(raw, name), 240)
        if len(said.split()) >= 3 and said not in lines:
            lines.append(said)
    if not lines and card.first_mes.strip():
        first = re.sub(r"```.*?(```|$)", " ", _fill(card.first_mes, name), flags=re.DOTALL)
        quoted = re.findall(r"[\"“]([^\"“”]+)[\"”]", first)
        if "*" in first or quoted:
            said = _sentences_within(" ".join(quoted), 240) if quoted else ""
        elif not _SECOND_PERSON.search(first):
            said = _sentences_within(first, 240)
        else:
            said = ""
        if len(said.split()) >= 3:
            lines.append(said)
    return tuple(lines[:3])


def _traits_of(personality: str) -> tuple[list[str], str]:
    """A personality field is either a trait list ("Cool, Wary, Smart") or prose."""
    items = [i.strip(" .") for i in re.split(r"\s*[,;]\s*", personality) if i.strip(" .")]
    if items and all(len(i.split()) <= 4 for i in items) and len(items) >= 2:
        return items, ""
    return [], personality


_ROLE_END = r"(?=\s+(?:and|who|with|that|of|in)\b|[,.;:!?—–]|$)"


def _role(parsed: _Parsed, name: str) -> str:
    """What the card says the character is: "X is a terrier", or in its own voice "I am a guardian"."""
    for sentence in parsed.prose:
        match = re.search(rf"\b{re.escape(name)} is (?:a|an|the) ([\w' -]{{3,50}}?){_ROLE_END}", sentence)
        if match:
            return match.group(1).strip()
    for line in parsed.dialogue:
        match = re.search(rf"\bI(?: am|'m) (?:a|an|the) ([\w' -]{{3,50}}?){_ROLE_END}", _spoken(line, name))
        if match:
            return match.group(1).strip()
    return ""


def _title(parsed: _Parsed, tags: list[str], name: str) -> str:
    """A short title in the card's own words: the role it names, its first traits, or its tags."""
    role = _role(parsed, name)
    if role:
        return role
    if parsed.traits:
        return ", ".join(t.casefold() for t in dict.fromkeys(parsed.traits[:3]))
    if tags:
        return ", ".join(t for t in tags[:3] if t)
    return ""


def card_to_persona(card: dict[str, Any], source: str) -> Persona:
    """Map a card's roleplay fields onto a town-hall persona.

    description, personality and scenario are parsed: W++ and PList blocks become
    traits and facts (looks are dropped), `<START>` dialogue becomes examples, and
    second-person scene-setting ("You wake in the forest") stays out of the bio.
    """
    fields = card_fields(card, source)
    name = _one_line(re.sub(r"[:\r\n\t]", " ", fields.name), 40)
    if not name:
        raise ConfigError(f"{source}: card field 'name' is empty")
    parsed = _Parsed()
    _parse_text(fields.description, name, parsed)
    traits, personality_prose = _traits_of(_fill(fields.personality, name))
    parsed.traits = traits + [t for t in parsed.traits if t not in traits]
    _parse_text(fields.scenario, name, parsed)
    _parse_text(fields.mes_example, name, parsed, dialogue_only=True)
    background = [s for s in parsed.scenario if not _SECOND_PERSON.search(s)]
    sentences = [x for p in parsed.prose for x in re.split(r"(?<=[.!?])\s+", p) if x.strip()]
    spoken_to_nobody = [x for x in sentences if not _SECOND_PERSON.search(x)]
    # Lines about the 1:1 relationship with {{user}} only when there is little else.
    prose = [x for x in spoken_to_nobody if "the audience" not in x]
    if len(prose) < 2:
        prose = spoken_to_nobody
    bio = _sentences_within(" ".join(prose + parsed.facts + background), 700)
    if not bio and parsed.traits:
        role = _role(parsed, name)
        listed = ", ".join(t.casefold() for t in dict.fromkeys(parsed.traits[:5]))
        bio = f"{name} is {'a ' + role + ': ' if role else ''}{listed}."
    if not bio:
        bio = f"{name}, a character brought in from a card."
    style_parts = []
    if parsed.traits:
        style_parts.append(", ".join(dict.fromkeys(t.casefold() for t in parsed.traits[:8])).capitalize() + ".")
    if personality_prose:
        style_parts.append(personality_prose)
    style = " ".join(style_parts) or "Speaks plainly and briefly, in the first person."
    data: dict[str, Any] = {
        "name": name,
        "title": _one_line(_title(parsed, fields.tags, name), 120) or "imported character",
        "bio": bio,
        "style": _sentences_within(style, 600),
        "examples": _examples(fields, name, parsed),
    }
    talk = _talkativeness(card)
    if talk is not None:
        data["talkativeness"] = talk
    return persona_from_data(data, source)


def _talkativeness(card: dict[str, Any]) -> float | None:
    data = card.get("data")
    body: dict[str, Any] = data if isinstance(data, dict) else {}
    ext = body.get("extensions")
    extensions: dict[str, Any] = ext if isinstance(ext, dict) else {}
    for value in (extensions.get("talkativeness"), card.get("talkativeness")):
        if value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if 0.0 <= number <= 1.0:
            return number
    return None


def import_card(path: Path, folder: Path | None = None, *, force: bool = False) -> tuple[Persona, Path]:
    """Convert a card file and write it as a persona TOML in the user's folder."""
    persona = card_to_persona(read_card(path), str(path))
    folder = Path(folder) if folder is not None else user_agents_dir()
    target = folder / f"{slug(persona.name)}.toml"
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists; pass --force to replace it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(target, persona_to_toml(persona))  # a full disk leaves no half persona file
    except OSError as error:
        raise ConfigError(f"{target}: cannot write the persona ({error.strerror or error})") from None
    return persona, target
