"""Character cards (V1/V2 JSON, PNG with a `chara` chunk) become personas; files made here."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from townhall.domain.cards import card_to_persona, import_card, read_card
from townhall.errors import ConfigError
from townhall.paths import user_agents_dir
from townhall.domain.personas import PersonaRegistry, load_persona

V1 = {
    "name": "Captain Reyes",
    "description": "{{char}} commanded the harbour patrol for thirty years.",
    "personality": "Gruff, loyal, impatient with {{user}}.",
    "scenario": "The harbour is flooding.",
    "first_mes": "Stand up straight, {{user}}.",
    "mes_example": "<START>\n{{user}}: Hello\n{{char}}: State your business now.\n{{char}}: Make it quick, sailor.",
}
V2 = {"spec": "chara_card_v2", "spec_version": "2.0",
      "data": {**V1, "name": "Nova: the Bard", "tags": ["bard", "traveller"]}}


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with(text_chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A real 1x1 RGB PNG, plus the given text chunks before IEND."""
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    pixels = chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
    extra = b"".join(chunk(kind, data) for kind, data in text_chunks)
    return b"\x89PNG\r\n\x1a\n" + header + pixels + extra + chunk(b"IEND", b"")


def test_v1_json_card(tmp_path: Path) -> None:
    path = tmp_path / "reyes.json"
    path.write_text(json.dumps(V1), encoding="utf-8")
    persona = card_to_persona(read_card(path), str(path))
    assert persona.name == "Captain Reyes"
    assert persona.bio == "Captain Reyes commanded the harbour patrol for thirty years. The harbour is flooding."
    assert persona.style == "Gruff, loyal, impatient with the audience."
    assert persona.title == "gruff, loyal, impatient with the audience"
    assert persona.examples == ("State your business now.", "Make it quick, sailor.")


def test_v2_json_card_name_is_made_a_valid_tag(tmp_path: Path) -> None:
    path = tmp_path / "nova.json"
    path.write_text(json.dumps(V2), encoding="utf-8")
    persona = card_to_persona(read_card(path), str(path))
    assert persona.name == "Nova the Bard" and persona.title == "gruff, loyal, impatient with the audience"


def test_png_card_with_chara_chunk_imports_into_the_user_folder(tmp_path: Path) -> None:
    payload = base64.b64encode(json.dumps(V2).encode("utf-8"))
    path = tmp_path / "nova.png"
    path.write_bytes(png_with([(b"tEXt", b"Comment\x00hello"), (b"tEXt", b"chara\x00" + payload)]))
    persona, target = import_card(path)
    assert target.parent == user_agents_dir() and target.exists()
    assert load_persona(target) == persona
    examples = ("State your business now.", "Make it quick, sailor.")
    assert PersonaRegistry.default().get(persona.name).examples == examples
    with pytest.raises(ConfigError, match="--force"):
        import_card(path)
    import_card(path, force=True)


def test_png_ztxt_chunk_is_read(tmp_path: Path) -> None:
    payload = base64.b64encode(json.dumps(V1).encode("utf-8"))
    path = tmp_path / "z.png"
    path.write_bytes(png_with([(b"zTXt", b"chara\x00\x00" + zlib.compress(payload))]))
    assert read_card(path)["name"] == "Captain Reyes"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (png_with([(b"tEXt", b"Comment\x00nothing")]), "no 'chara' text chunk"),
        (png_with([(b"tEXt", b"chara\x00!!!not base64!!!")]), "not valid base64"),
        (b'{"description": "no name"}', "card field 'name'"),
        (b"[1, 2]", "expected a JSON object"),
        (b"not json", "invalid JSON"),
    ],
)
def test_bad_cards_give_one_clear_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.card"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        card_to_persona(read_card(path), str(path))
    assert message in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_agents_import_command(tmp_path: Path) -> None:
    path = tmp_path / "reyes.json"
    path.write_text(json.dumps(V1), encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "townhall", "agents", "import", str(path)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "Imported Captain Reyes" in run.stdout
    shown = subprocess.run([sys.executable, "-m", "townhall", "agents", "show", "captain reyes", "--json"],
                           capture_output=True, text=True)
    assert json.loads(shown.stdout)["name"] == "Captain Reyes"
    missing = subprocess.run([sys.executable, "-m", "townhall", "agents", "import", str(tmp_path / "nope.json")],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.strip().startswith("townhall: error:")
    assert "Traceback" not in missing.stderr


# Hand-made cards with the structures found in SillyTavern's own default cards
# (Seraphina, Flux the Cat, Coding Sensei), in words written for this test.
WPP = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "talkativeness": "0.7",
    "data": {
        "name": "Thistle",
        "description": (
            '[Thistle\'s Personality= "stubborn", "thrifty", "kind", "nosy"]\r\n'
            '[Thistle\'s body= "grey braid", "green apron", "muddy boots"]\r\n'
            "<START>\r\n"
            '{{user}}: "What do you grow?"\r\n'
            '{{char}}: *Thistle wipes her hands on her apron and squints at you.* "Beans, mostly. Beans feed a street '
            'for a week." *She points at the rows.* "Squash when the rain is kind."\r\n'
            '{{user}}: "Why the garden?"\r\n'
            '{{char}}: *She laughs.* "I am a gardener, first and last. A vacant lot is a waste of good dirt."\r\n'
            "[Genre: slice of life; Tags: garden, village; Scenario: You stumble into {{char}}'s allotment at dawn.]"
        ),
        "personality": "",
        "scenario": "",
        "first_mes": '*You wake to the sound of a hoe.* "Up already? Mind the seedlings."',
        "mes_example": "",
        "tags": [],
        "extensions": {"talkativeness": "0.8"},
    },
}
PROSE = {
    "name": "Pip the Dog",
    "description": (
        "{{char}} is a terrier who guards the town square.\r\n{{char}} loves tennis balls.\r\n"
        "{{char}} is wary of {{user}}.\r\n{{char}} barks at every bicycle."
    ),
    "personality": "Loyal, Loud, Curious",
    "scenario": "{{char}} is new to {{user}}'s flat.\nYou have not named the dog yet.",
    "first_mes": "One morning you find a small terrier asleep on your doormat.",
    "mes_example": "",
}
CODER = {
    "name": "Byte Tutor",
    "description": "[Byte Tutor = answers {{user}}'s programming questions with short code samples.]",
    "personality": "",
    "first_mes": '"Hi!"\r\n\r\nIn Python:\r\n\r\n```py\r\nprint("Hi!")\r\n```',
    "tags": ["coding", "helper"],
}


def test_wpp_card_gives_a_readable_persona_without_looks_or_narration() -> None:
    persona = card_to_persona(WPP, "thistle.json")
    assert persona.title == "gardener", "the role the character names in its own words"
    assert persona.bio == "Thistle is a gardener: stubborn, thrifty, kind, nosy."
    assert "[" not in persona.title + persona.bio + persona.style and "=" not in persona.title
    assert persona.style == "Stubborn, thrifty, kind, nosy."
    assert "braid" not in persona.bio + persona.style, "looks stay out of a town-hall persona"
    assert "You stumble" not in persona.bio and "allotment" not in persona.bio, "second-person scene-setting is dropped"
    assert persona.examples == (
        "Beans, mostly. Beans feed a street for a week. Squash when the rain is kind.",
        "I am a gardener, first and last. A vacant lot is a waste of good dirt.",
    )
    assert not any("*" in ex for ex in persona.examples)
    assert persona.talkativeness == 0.8


def test_prose_card_keeps_facts_and_drops_the_roleplay_scene() -> None:
    persona = card_to_persona(PROSE, "pip.json")
    assert persona.title == "terrier" and persona.style == "Loyal, loud, curious."
    assert persona.bio.startswith("Pip the Dog is a terrier who guards the town square. "
                                  "Pip the Dog loves tennis balls.")
    assert "{{" not in persona.bio and "You have not" not in persona.bio and "wary of" not in persona.bio
    assert persona.examples == (), "a second-person first_mes is narration, not something the dog says"


def test_card_with_code_first_message_and_name_keyed_block() -> None:
    persona = card_to_persona(CODER, "coder.json")
    assert persona.title == "coding, helper"
    assert persona.bio == "Byte Tutor answers the audience's programming questions with short code samples."
    assert persona.examples == ()
    assert "placeholder" not in persona.style and persona.style


def test_user_and_bot_placeholders_are_filled() -> None:
    card = {"name": "Ola", "description": "<BOT> runs the ferry. <BOT> tells <USER> the timetable.",
            "mes_example": "<START>\n<USER>: When?\n<BOT>: *checks watch* The ferry leaves at noon sharp."}
    persona = card_to_persona(card, "ola.json")
    assert persona.bio == "Ola runs the ferry. Ola tells the audience the timetable."
    assert persona.examples == ("The ferry leaves at noon sharp.",)


def test_png_v2_card_with_wpp_block_imports(tmp_path: Path) -> None:
    payload = base64.b64encode(json.dumps(WPP).encode("utf-8"))
    path = tmp_path / "thistle.png"
    path.write_bytes(png_with([(b"tEXt", b"chara\x00" + payload)]))
    persona, target = import_card(path)
    assert load_persona(target) == persona and persona.title == "gardener"


def test_classic_wpp_block_over_several_lines() -> None:
    card = {
        "name": "Ola",
        "description": '[character("Ola")\n{\nSpecies("human")\nPersonality("calm" + "dry" + "punctual")\n'
        'Body("tall" + "grey coat")\nLikes("timetables")\n}]',
    }
    persona = card_to_persona(card, "ola.json")
    assert persona.title == "calm, dry, punctual" and persona.style == "Calm, dry, punctual."
    assert persona.bio == "Species: human. Likes: timetables."
