"""Reading front-office directory exports: encodings, delimiters, headers, names, languages."""

from __future__ import annotations

import codecs

import pytest

from bot.directory_file import DirectoryFile, Row, language_code, read_directory

SAM = "+61491570156"
MIA = "+61491570157"
LEO = "+61491570158"


def read(text: str, encoding: str = "utf-8", region: str = "AU") -> DirectoryFile:
    return read_directory(text.encode(encoding), region)


def pairs(result: DirectoryFile) -> list[tuple[str, str]]:
    return [(row.phone, row.personal_id) for row in result.rows]


# --- encodings ----------------------------------------------------------------------------------

NAMES_FILE = "phone,personal_id,name\n0491570156,A1,Zoë Łukasz\n0491570157,A2,Анна 王 محمد\n"


@pytest.mark.parametrize(
    ("prefix", "codec", "expected"),
    [
        (b"", "utf-8", "utf-8"),
        (codecs.BOM_UTF8, "utf-8", "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16"),
        (b"", "utf-16-le", "utf-16-le"),
        (b"", "utf-16-be", "utf-16-be"),
    ],
)
def test_unicode_encodings_are_detected_and_names_survive(
    prefix: bytes, codec: str, expected: str
) -> None:
    data = prefix + NAMES_FILE.encode(codec)
    result = read_directory(data, "AU")
    assert result.encoding == expected
    assert data.decode(result.encoding).lstrip("\ufeff") == NAMES_FILE
    assert [row.name for row in result.rows] == ["Zoë Łukasz", "Анна 王 محمد"]
    assert result.rejected == []
    assert any(note.startswith(f"encoding: {expected}") for note in result.notes)


def test_a_latin1_name_survives() -> None:
    data = "phone,personal_id,name\n0491570156,A1,Zoë O’Brien – €5\n".encode("cp1252")
    result = read_directory(data, "AU")
    assert result.encoding == "cp1252"
    assert result.rows[0].name == "Zoë O’Brien – €5"
    assert "\ufffd" not in result.rows[0].name


def test_bytes_cp1252_leaves_undefined_are_read_as_latin1() -> None:
    # Not "Zo\xeb\x81\x9d": that happens to be valid UTF-8 (a Hangul syllable after "Zo").
    data = b"phone,personal_id,name\n0491570156,A1,Zo\xeb \x81\x8d\n"
    result = read_directory(data, "AU")
    assert result.encoding == "cp1252"
    assert result.rows[0].name == "Zoë \x81\x8d"


def test_valid_utf8_is_not_mistaken_for_cp1252() -> None:
    # "Ã«" is what UTF-8 "ë" looks like through cp1252 glasses.
    result = read("phone,personal_id,name\n0491570156,A1,Zoë\n")
    assert result.encoding == "utf-8"
    assert result.rows[0].name == "Zoë"


# --- delimiters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delimiter", "name"), [(",", "comma"), (";", "semicolon"), ("\t", "tab"), ("|", "pipe")]
)
def test_each_delimiter_is_detected(delimiter: str, name: str) -> None:
    lines = [["phone", "personal_id", "name"], ["0491570156", "A1", "Sam Patel"]]
    lines.append(["0491570157", "A2", "Mia Patel"])
    result = read("\n".join(delimiter.join(cells) for cells in lines) + "\n")
    assert result.delimiter == delimiter
    assert any(note.startswith(f"delimiter: {name}") for note in result.notes)
    assert [row.name for row in result.rows] == ["Sam Patel", "Mia Patel"]


def test_decimal_commas_do_not_fool_the_delimiter_detection() -> None:
    text = "Phone;ID;Name;Balance\n0491570156;A1;Sam;1,50\n0491570157;A2;Mia;2,75\n"
    result = read(text)
    assert result.delimiter == ";"
    assert pairs(result) == [(SAM, "A1"), (MIA, "A2")]


def test_ragged_rows_fall_back_to_counting_on_the_header_line() -> None:
    text = "Mobile;Student ID;Name;Email\n0491570156;S1\n0491570157;S2;Mia;m@x;extra;cells\n"
    result = read(text)
    assert result.delimiter == ";"
    assert "delimiter: semicolon (counted on the first line)" in result.notes
    assert result.rows == [
        Row(2, SAM, "S1", None, None),
        Row(3, MIA, "S2", "Mia", None),
    ]


def test_quoted_fields_keep_delimiters_and_newlines_and_lines_stay_physical() -> None:
    text = (
        'phone,personal_id,name\r\n"0491 570 156","A1","Patel, Sam"\r\n'
        '0491570157,A2,"Mia\r\nPatel"\r\n\r\n0491570158,A3, "Leo ""Lion"" Patel"\r\n'
        "12,A4,Bad\r\n"
    )
    result = read(text)
    assert [(row.line, row.name) for row in result.rows] == [
        (2, "Patel, Sam"),
        (3, "Mia Patel"),
        (6, 'Leo "Lion" Patel'),
    ]
    assert result.rejected == [(7, "not a valid phone number for region AU: '12'")]


def test_an_unclosed_quote_is_reported_rather_than_swallowing_the_file() -> None:
    body = "".join(f"04915701{56 + i % 3},A{i},Name {i}\n" for i in range(20))
    result = read('phone,personal_id,name\n0491570156,A0,"Sam\n' + body)
    assert result.rows == []
    assert result.rejected[0][0] == 2
    assert "closing quote" in result.rejected[0][1]


# --- headers ------------------------------------------------------------------------------------


def test_columns_are_found_in_any_order_and_spelling() -> None:
    text = "E-mail,FULL_NAME,Personal.ID,Tel Number-1\nx@y,Sam Patel,A1,0491570156\n"
    result = read(text)
    assert result.rows == [Row(2, SAM, "A1", "Sam Patel", None)]
    assert "ignored columns: E-mail" in result.notes


def test_a_specific_column_name_wins_over_a_generic_one() -> None:
    result = read("ID,Number,Student ID,Mobile\n7,12,S1,0491570156\n")
    assert pairs(result) == [(SAM, "S1")]
    assert "ignored columns: ID, Number" in result.notes


PHONE_ALIASES = [
    "phone, phone number, mobile, mobile number, cell, tel, telephone, telnumber1",
    "tel number 1, sms, msisdn, number",
]
ID_ALIASES = [
    "personal_id, personalid, personal id, id, student id, student number, patient id",
    "client id, customer id, mrn, external id",
]


@pytest.mark.parametrize("alias", ", ".join(PHONE_ALIASES).split(", "))
def test_every_phone_alias_is_a_phone_column(alias: str) -> None:
    result = read(f"Patient ID,{alias.upper()}\nP1,0491570156\n")
    assert pairs(result) == [(SAM, "P1")]


@pytest.mark.parametrize("alias", ", ".join(ID_ALIASES).split(", "))
def test_every_personal_id_alias_is_a_personal_id_column(alias: str) -> None:
    result = read(f"Mobile,{alias.title()}\n0491570156,P1\n")
    assert pairs(result) == [(SAM, "P1")]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("phone,id,first name,last name", "Sam Patel"),
        ("phone,id,given name", "Sam"),
        ("phone,id,surname", "Sam"),
        ("phone,id,forename,family name,display name", "Display"),
    ],
)
def test_the_name_comes_from_a_name_column_or_first_and_last(header: str, expected: str) -> None:
    result = read(f"{header}\n0491570156,A1,Sam,Patel,Display\n")
    assert result.rows[0].name == expected


def test_a_blank_name_cell_falls_back_to_first_and_last() -> None:
    result = read("phone,id,name,first,last\n0491570156,A1,,Sam,Patel\n")
    assert result.rows[0].name == "Sam Patel"


def test_a_second_phone_column_gives_one_row_per_valid_phone() -> None:
    text = (
        "TelNumber1,TelNumber2,ID\n0491570156,0491570157,A1\n0491570158,0491 570 158,A2\n"
        "0491570156,,A3\n12,0491570157,A4\n"
    )
    result = read(text)
    assert pairs(result) == [(SAM, "A1"), (MIA, "A1"), (LEO, "A2"), (SAM, "A3"), (MIA, "A4")]
    assert "columns: phone=TelNumber1 + TelNumber2, personal_id=ID" in result.notes
    assert "invalid phone numbers ignored next to a valid one (lines 5)" in result.notes
    assert result.rejected == []


@pytest.mark.parametrize("second", ["phone 2", "alternate phone", "home phone", "Tel_Number_2"])
def test_every_second_phone_alias_is_read(second: str) -> None:
    result = read(f"mobile,{second},id\n0491570156,0491570157,A1\n")
    assert pairs(result) == [(SAM, "A1"), (MIA, "A1")]


def test_a_file_without_header_is_read_by_position() -> None:
    result = read("0491570156,A1,Sam Patel,ignored\n0491570157,A2\n")
    assert result.rows == [Row(1, SAM, "A1", "Sam Patel", None), Row(2, MIA, "A2", None, None)]
    assert "no header row: columns read as phone, personal_id, name" in result.notes


def test_a_headerless_file_whose_first_phone_is_mistyped_is_still_data() -> None:
    result = read("0491 570,A1,Sam\n0491570157,A2,Mia\n")
    assert pairs(result) == [(MIA, "A2")]
    assert result.rejected == [(1, "not a valid phone number for region AU: '0491 570'")]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "Name,Email,Student ID",
            "no phone column: found columns Name, Email, Student ID; "
            "name one of phone, mobile, cell",
        ),
        ("Mobile,Name", "no personal_id column: found columns Mobile, Name; name one of personal"),
        ("Name,Email", "no phone or personal_id column: found columns Name, Email; name one of"),
        ("Telefon,Kunden-Nr", "no phone or personal_id column: found columns Telefon, Kunden-Nr"),
    ],
)
def test_a_header_without_phone_or_personal_id_says_what_it_found(
    header: str, message: str
) -> None:
    with pytest.raises(ValueError) as raised:
        read(f"{header}\nSam,s@x,A1\n")
    assert str(raised.value).startswith(message)


def test_extra_columns_are_ignored_and_never_shifted_into_the_name() -> None:
    text = "Email,Phone,DOB,ID,Notes\ns@x,0491570156,2001-01-01,A1,likes tea\n"
    result = read(text)
    assert result.rows == [Row(2, SAM, "A1", None, None)]
    assert [n for n in result.notes if n.startswith("ignored")] == [
        "ignored columns: Email, DOB, Notes"
    ]


def test_short_and_long_rows_are_padded_and_cut() -> None:
    result = read("phone,id,name\n0491570156,A1\n0491570157,A2,Mia,x,y,z\n")
    assert [(row.personal_id, row.name) for row in result.rows] == [("A1", None), ("A2", "Mia")]


# --- rows ---------------------------------------------------------------------------------------


def test_bad_rows_are_rejected_with_their_line_and_empty_lines_skipped() -> None:
    text = (
        "phone,personal_id,name\n\n0491570156,,Sam\n,A2,Mia\n , ,Nobody\n"
        "0491570157,A4,Ok\n\n0491570158," + "X" * 31 + "\n0491570158," + "Y" * 30 + "\n"
        "not a phone,A6\n"
    )
    result = read(text)
    assert result.rejected == [
        (3, "no personal_id"),
        (4, "no phone number"),
        (5, "no phone number and no personal_id"),
        (8, f"personal_id longer than 30 characters: {'X' * 31!r}"),
        (10, "not a valid phone number for region AU: 'not a phone'"),
    ]
    assert pairs(result) == [(MIA, "A4"), (LEO, "Y" * 30)]


def test_numbers_are_read_in_the_region_given() -> None:
    text = "phone,id\n(201) 555-0123,A1\n+61 491 570 156,A2\n"
    assert pairs(read(text, region="US")) == [("+12015550123", "A1"), (SAM, "A2")]
    assert read(text, region="AU").rejected[0][0] == 2


def test_duplicate_rows_keep_the_last_and_are_counted() -> None:
    text = "phone,id,name\n0491570156,A1,Old\n0491570157,A2,Mia\n+61491570156,A1,New\n"
    text += "0491 570 156,A1,Newest\n"
    result = read(text)
    assert result.rows == [Row(3, MIA, "A2", "Mia", None), Row(5, SAM, "A1", "Newest", None)]
    assert "2 duplicate phone and personal_id row(s): the last one kept" in result.notes


def test_an_empty_file_has_no_rows() -> None:
    for data in (b"", b"\n\n", codecs.BOM_UTF8):
        result = read_directory(data, "AU")
        assert result.rows == [] and result.rejected == []


@pytest.mark.parametrize(
    "name",
    ["Анна Петрова", "王小明", "محمد علي", "Łukasz Wójcik", "अनीता शर्मा", "Nguyễn Thị Hoa"],
)
def test_names_in_any_script_survive_exactly(name: str) -> None:
    for codec in ("utf-8", "utf-16"):
        result = read(f"phone,id,name\n0491570156,A1,{name}\n", codec)
        assert result.rows[0].name == name


def test_names_have_whitespace_collapsed_and_are_cut_at_100_characters() -> None:
    result = read(
        f'phone,id,name\n0491570156,A1,"  Sam \t  Patel\u00a0 "\n0491570157,A2,{"a" * 150}\n'
    )
    assert [row.name for row in result.rows] == ["Sam Patel", "a" * 100]


@pytest.mark.parametrize("cell", ["   ", "-", "?!", "--- / ---", "."])
def test_a_name_without_letters_is_no_name(cell: str) -> None:
    result = read(f'phone,id,name\n0491570156,A1,"{cell}"\n')
    assert result.rows[0].name is None


# --- languages ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "code"),
    [
        ("es", "es"),
        ("ES", "es"),
        ("es-MX", "es"),
        ("es_MX", "es"),
        ("zh-Hans", "zh"),
        ("zh-CN", "zh"),
        ("de", "de"),
        ("English", "en"),
        ("Spanish", "es"),
        ("Español", "es"),
        ("espanol", "es"),
        ("Chinese", "zh"),
        ("中文", "zh"),
        ("Mandarin", "zh"),
        ("Chinese (Simplified)", "zh"),
        ("Vietnamese", "vi"),
        ("Tiếng Việt", "vi"),
        ("tieng viet", "vi"),
        ("Arabic", "ar"),
        ("العربية", "ar"),
        ("Hindi", "hi"),
        ("हिन्दी", "hi"),
        ("Tagalog", "tl"),
        ("Filipino", "tl"),
        ("Portuguese", "pt"),
        ("Português", "pt"),
        ("French", "fr"),
        ("FRANÇAIS", "fr"),
        ("Greek", "el"),
        ("Ελληνικά", "el"),
        ("Italian", "it"),
        ("Italiano", "it"),
        ("German", "de"),
        ("Deutsch", "de"),
        ("de-AT", "de"),
        ("Russian", "ru"),
        ("Русский", "ru"),
        ("Korean", "ko"),
        ("한국어", "ko"),
        ("Japanese", "ja"),
        ("日本語", "ja"),
        ("ja-JP", "ja"),
        ("Klingon", None),
        ("xx", None),
        ("e", None),
    ],
)
def test_language_cells_become_codes(cell: str, code: str | None) -> None:
    assert language_code(cell) == code


def test_the_language_column_is_read_and_unknown_values_noted_once() -> None:
    cells = ["es-MX", "Klingon", "", "Elvish", "Klingon", "Dothraki", "Na'vi", "Huttese", "Ewokese"]
    text = "phone,id,Preferred Language\n" + "".join(
        f"0491570156,A{i},{cell}\n" for i, cell in enumerate(cells)
    )
    result = read(text)
    assert [row.language for row in result.rows] == ["es"] + [None] * 8
    assert [n for n in result.notes if n.startswith("unknown")] == [
        "unknown languages, left empty: Klingon, Elvish, Dothraki, Na'vi, Huttese and 1 more"
    ]


def test_without_a_language_column_the_language_is_none() -> None:
    assert read("phone,id\n0491570156,A1\n").rows[0].language is None


# --- size ---------------------------------------------------------------------------------------


def test_twenty_thousand_rows_are_read() -> None:
    lines = ["Mobile;Student ID;First Name;Last Name;Lang;Email"]
    for i in range(20_000):
        phone = f"0412 {i // 1000:03d} {i % 1000:03d}" if i % 100 else "123"
        lines.append(f"{phone};S{i};Given{i};Family;{'es' if i % 2 else 'English'};s{i}@x")
    result = read_directory("\n".join(lines).encode("utf-16"), "AU")
    assert len(result.rows) == 19_800
    assert len(result.rejected) == 200
    assert result.rows[-1] == Row(20_001, "+61412019999", "S19999", "Given19999 Family", "es")
