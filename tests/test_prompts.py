from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot import prompts as P
from bot import sms
from bot.errors import PromptError
from bot.prompts import Prompts
from bot.replies import CHOICE_LISTS, LINES, PIECES, PLACEHOLDERS, ReplyKey

K = ReplyKey


def _worst_case_render(prompts: Prompts, key: ReplyKey) -> str:
    if key in CHOICE_LISTS:
        return prompts.render_choices(key, [P.WORST_CASE["name"]] * P.MAX_CHOICES, True)
    if key in LINES:
        line = {"name": "N" * 20, "ticket": "W" * 20, "position": 999, "wait": 999}
        return prompts.render_lines(key, [(K.STATUS_PERSON, line)] * 4)
    values = {name: P.WORST_CASE[name] for name in PLACEHOLDERS[key]}
    return prompts.render(key, **values)


@pytest.mark.parametrize("key", sorted(set(ReplyKey) - PIECES))
def test_every_text_fits_one_gsm7_segment_with_worst_case_values(
    prompts: Prompts, key: ReplyKey
) -> None:
    text = _worst_case_render(prompts, key)
    assert sms.is_gsm7(text), key
    assert sms.septets(text) <= 160, (key, len(text))
    assert sms.segments(text) == 1
    assert "{" not in text


def test_two_short_names_are_offered_whole(prompts: Prompts) -> None:
    text = prompts.render_choices(K.CHOOSE, ["Alex Smith", "Sam Smith"], everyone=True)
    assert text == "Who is checking in? Reply 1 for Alex Smith, 2 for Sam Smith, 3 for everyone."


def test_values_outside_gsm7_are_made_safe(prompts: Prompts) -> None:
    text = prompts.render_choices("choose", ["Zoë Ñúñez", "李 Wang 🙂"])
    assert sms.is_gsm7(text)
    assert text == "Who is checking in? Reply 1 for Zoe Ñuñez, 2 for Li Wang."


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Дмитрий Иванов", "Dmitriy Ivanov"),
        ("王芳", "WangFang"),
        ("Łukasz", "Lukasz"),
        ("Σοφία Παπαδοπούλου", "Sofia Papadopoulou"),
        ("Nguyễn Thị Hương", "Nguyen Thi Huong"),
        ("José", "José"),  # é is GSM-7: kept
    ],
)
def test_names_in_any_script_survive_into_a_one_segment_reply(
    prompts: Prompts, name: str, shown: str
) -> None:
    text = prompts.render_choices("choose", [name, "Mia Patel"])
    assert sms.is_gsm7(text) and sms.segments(text) == 1
    assert text == f"Who is checking in? Reply 1 for {shown}, 2 for Mia Patel."


def test_a_name_with_nothing_to_show_is_listed_by_its_number(prompts: Prompts) -> None:
    text = prompts.render_choices("choose", ["🙂🙂", "Mia"])
    assert text == "Who is checking in? Reply 1 for #1, 2 for Mia."


def test_segments_counts_gsm7_and_unicode() -> None:
    assert sms.segments("a" * 160) == 1
    assert sms.segments("a" * 161) == 2
    assert sms.segments("€" * 80) == 1  # extension characters cost two septets
    assert sms.segments("🙂" * 36) == 2  # UCS-2: 70 code units a segment, emoji take two


@given(
    st.text(
        alphabet=st.sampled_from(sms.GSM7_BASIC + sms.GSM7_EXTENSION + "ÀŁΣ王🙂 \t"), max_size=60
    )
)
def test_sms_arithmetic_is_its_definition(text: str) -> None:
    """The C-loop forms of is_gsm7, septets and to_gsm7 agree with the plain definitions."""
    alphabet = set(sms.GSM7_BASIC + sms.GSM7_EXTENSION)
    assert sms.is_gsm7(text) == all(c in alphabet for c in text)
    assert sms.septets(text) == sum(2 if c in sms.GSM7_EXTENSION else 1 for c in text)
    made = sms.to_gsm7(text)
    assert all(c in alphabet for c in made)
    if all(c in alphabet for c in text):  # nothing to change but the spacing
        assert made == " ".join(text.split())


def _copy(src: Path, dest: Path, edit: tuple[str, str] | None = None) -> Path:
    text = (src / "en.toml").read_text(encoding="utf-8")
    if edit:
        text, count = re.subn(edit[0], edit[1], text, count=1, flags=re.M)
        assert count == 1, edit
    (dest / "en.toml").write_text(text, encoding="utf-8")
    return dest


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ((r"^hint = .*$", ""), "text 'hint' is missing"),
        ((r"\{ticket\}\. You're number", "{tiket}. You're number"), "unknown placeholder"),
        ((r"^declined = .*$", 'declined = "No problem 😀"'), "non-GSM-7"),
        ((r"^help = .*$", 'help = "' + "x" * 161 + '"'), "161 characters"),
        ((r'^  "yes", "y", "yeah"', '  "stop", "y", "yeah"'), "opt-out word"),
        ((r"^greeting = \[.*$", 'greeting = "hi"'), "'greeting' must be a list of text"),
        ((r"^choose = .*$", 'choose = "Who is it?"'), "must use placeholder"),
        ((r'^script = "latin"', 'script = "klingon"'), "script must be one of"),
        ((r"^\[understand\]", "[understand]\nrainbows = []"), "'rainbows' is not a list"),
    ],
)
def test_start_up_fails_loudly_naming_the_key(
    prompts_dir: Path, tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    with pytest.raises(PromptError, match=re.escape(message)):
        P.load_catalogue(_copy(prompts_dir, tmp_path, edit))


def test_a_missing_language_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="no prompts file for language 'fr'"):
        P.load(tmp_path, "fr")


def test_a_copied_prompts_file_loads_unchanged(prompts_dir: Path, tmp_path: Path) -> None:
    assert P.load(_copy(prompts_dir, tmp_path), "en").texts["hint"]
