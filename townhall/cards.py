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
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from townhall.errors import ConfigError, NotFoundError, validation_message
from townhall.paths import user_agents_dir
from townhall.personas import Persona, persona_from_data, persona_to_toml, slug

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


def _fill(text: str, name: str) -> str:
    text = re.sub(r"\{\{\s*char\s*\}\}|<BOT>", name, text, flags=re.IGNORECASE)
    text = re.sub(r"\{\{\s*user\s*\}\}|<USER>", "the audience", text, flags=re.IGNORECASE)
    return re.sub(r"[ \t]+", " ", text).strip()


def _one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _examples(card: CardData, name: str) -> tuple[str, ...]:
    lines: list[str] = []
    for raw in _fill(card.mes_example, name).splitlines():
        head, sep, said = raw.partition(":")
        if sep and head.strip().casefold() == name.casefold() and said.strip():
            lines.append(_one_line(said, 240))
    if not lines and card.first_mes.strip():
        lines.append(_one_line(_fill(card.first_mes, name), 240))
    return tuple(lines[:3])


def card_to_persona(card: dict[str, Any], source: str) -> Persona:
    fields = card_fields(card, source)
    name = _one_line(re.sub(r"[:\r\n\t]", " ", fields.name), 40)
    if not name:
        raise ConfigError(f"{source}: card field 'name' is empty")
    description = _fill(fields.description, name)
    personality = _fill(fields.personality, name)
    scenario = _fill(fields.scenario, name)
    bio = " ".join(part for part in (description, scenario) if part) or f"{name}, a character brought in from a card."
    style = personality or "in character, as on the card"
    if fields.tags:
        title = _one_line(", ".join(t for t in fields.tags[:3] if t), 120)
    else:
        first_sentence = re.split(r"(?<=[.!?])\s", personality or description, maxsplit=1)[0]
        title = _one_line(first_sentence, 120)
    return persona_from_data(
        {
            "name": name,
            "title": title or "imported character",
            "bio": _one_line(bio, 2000),
            "style": _one_line(style, 600),
            "examples": _examples(fields, name),
        },
        source,
    )


def import_card(path: Path, folder: Path | None = None, *, force: bool = False) -> tuple[Persona, Path]:
    """Convert a card file and write it as a persona TOML in the user's folder."""
    persona = card_to_persona(read_card(path), str(path))
    folder = Path(folder) if folder is not None else user_agents_dir()
    target = folder / f"{slug(persona.name)}.toml"
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists; pass --force to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(persona_to_toml(persona), encoding="utf-8")
    return persona, target
