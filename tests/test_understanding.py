"""Reading what customers mean: arrivals, and everything that only looks like one."""

from __future__ import annotations

import pytest

from bench import understanding as corpus
from bot.prompts import BUILT_IN, Catalogue, load_catalogue
from bot.understanding import NOTHING, Expecting, Meaning, Topic, read
from bot.understanding.text import plain, prepare

M = Meaning
ARRIVAL = Expecting(topic=Topic.ARRIVAL)
FORCE = Expecting(topic=Topic.FORCE)
LEAVE = Expecting(topic=Topic.LEAVE)
PATELS = Expecting(names=("Sam Patel", "Mia Patel"), everyone=3)


@pytest.mark.parametrize(
    "text",
    [
        "here",
        "HERE!",
        "i'm here",
        "I’m here",
        "arrived",
        "hre",
        "heer",
        "Here 👍",
        "hereee",
        "I'm hear",
        "I am hear now",
        "at reception",
        "I'm in the waiting room",
        "Sitting in the lobby",
        "Just walked in",
        "Made it!",
        "we're here",
        "Sorry I'm late, I'm here now",
        "check me in please",
        "Héré",
        # A thing named beside an arrival is not what arrived.
        "I'm here for my results",
        "I'm here thanks for the reminder",
        "I'm on level 3 at reception",
        "Estoy aquí con la carta de referencia",
        "я пришла на анализы",
        "je suis là avec ma carte vitale",
        "結果を聞きに来ました",
    ],
)
def test_arrivals_are_read_as_arrivals(catalogue: Catalogue, text: str) -> None:
    assert read(text, catalogue.lexicon).meaning is M.ARRIVE, read(text, catalogue.lexicon).why


@pytest.mark.parametrize(
    ("text", "meaning"),
    [
        ("What time should I arrive?", M.QUESTION),
        ("How do I check in?", M.HELP),
        ("Is it ok to arrive early?", M.QUESTION),
        ("I won't be here until 3", M.NOT_YET),
        ("I'll be there in 10", M.NOT_YET),
        ("arriving soon", M.NOT_YET),
        ("Is the clinic here on level 2?", M.QUESTION),
        ("is it here", M.QUESTION),
        ("not here yet", M.NOT_YET),
        ("I was here yesterday", M.OTHER),
        ("my friend said he was here", M.OTHER),
        ("here is my booking number 48213", M.NUMBER),
        ("how do I get here from the station", M.QUESTION),
        ("there in 5", M.NOT_YET),
        ("where do I go?", M.QUESTION),
        ("were you open", M.QUESTION),
        ("parked outside", M.UNSURE),
        ("can I check in now?", M.UNSURE),
        ("running late but I'm in the car park", M.UNSURE),
        ("Claim your prize here: bit.ly/3xP", M.UNSURE),  # a link: spam
        ("I'm here lol, see www.example.com", M.UNSURE),
        ("im here... haha no still in bed", M.UNSURE),  # a laugh and a "no" take it back
    ],
)
def test_questions_negations_and_the_future_are_never_arrivals(
    catalogue: Catalogue, text: str, meaning: Meaning
) -> None:
    reading = read(text, catalogue.lexicon)
    assert reading.meaning is meaning, reading.why


@pytest.mark.parametrize(
    ("text", "meaning"),
    [
        ("how much longer", M.STATUS),
        ("what number am I", M.STATUS),
        ("how many ahead of me", M.STATUS),
        ("Am I next?", M.STATUS),
        ("ETA?", M.STATUS),
        ("Any update?", M.STATUS),
        ("Did it work?", M.STATUS),
        ("STATSU", M.STATUS),
        ("I can't make it", M.LEAVE),
        ("I need to reschedule", M.LEAVE),
        ("I left", M.LEAVE),
        ("take me off the list", M.LEAVE),
        ("Remove me please", M.LEAVE),
        ("cancel my appointment", M.LEAVE),
        ("thanks", M.THANKS),
        ("Great, thanks", M.THANKS),
        ("hello", M.GREETING),
        ("help", M.HELP),
        ("asdf", M.UNKNOWN),
        ("", M.UNKNOWN),
    ],
)
def test_what_people_ask_and_say_with_nothing_open(
    catalogue: Catalogue, text: str, meaning: Meaning
) -> None:
    reading = read(text, catalogue.lexicon)
    assert reading.meaning is meaning, reading.why


@pytest.mark.parametrize(
    ("text", "meaning"),
    [
        ("k", M.YES),
        ("sounds good", M.YES),
        ("go ahead", M.YES),
        ("please do", M.YES),
        ("of course", M.YES),
        ("👍", M.YES),
        ("✅", M.YES),
        ("check me in", M.YES),
        ("no problem, check me in", M.YES),
        ("no worries, yes please", M.YES),
        ("yesss", M.YES),
        ("I'll wait", M.NO),
        ("ok I'll wait", M.NO),
        ("👎", M.NO),
        ("nope", M.NO),
        ("not now", M.NO),
        ("yes no", M.UNKNOWN),
        # A yes with a question is asked again: what it asks comes first.
        ("yes what does early mean, my appt is at 2", M.UNKNOWN),
        ("ok but how early am I exactly", M.UNKNOWN),
        ("I'm here, where do I go?", M.UNKNOWN),
        # Someone else, before any arrival of the sender's; a rolled eye; a "later".
        ("yes my daughter is already there", M.UNKNOWN),
        ("sí, mi hija ya está ahí", M.UNKNOWN),
        ("oui j'attends", M.UNKNOWN),
        ("sí claro, y esperar dos horas más, genial 🙄", M.UNKNOWN),
        ("👍 等下再弄", M.UNKNOWN),
        ("はい、10分後に着いたらお願いします", M.UNKNOWN),
        ("how long would I wait if I check in now?", M.STATUS),
        ("actually I need to cancel", M.LEAVE),
    ],
)
def test_answers_to_the_early_question(catalogue: Catalogue, text: str, meaning: Meaning) -> None:
    reading = read(text, catalogue.lexicon, FORCE, prefer="en")
    assert reading.meaning is meaning, reading.why


@pytest.mark.parametrize(
    ("text", "meaning"),
    [
        ("yes I'm inside", M.YES),
        ("I'm here", M.YES),
        ("yes, where do I go?", M.YES),  # to this question, a question after a yes is fine
        ("I'm here with my mom for her 3pm", M.YES),  # the sender's arrival, with someone
        ("엄마랑 같이 왔어요", M.YES),
        ("My son and I are here for his 3:15", M.YES),
        ("ναι η κόρη μου είναι εκεί", M.UNKNOWN),  # the daughter is there: and the sender?
        ("on my way", M.NO),
        ("no, 5 min away", M.NO),
        ("where do I park?", M.QUESTION),
    ],
)
def test_answers_to_are_you_here_now(catalogue: Catalogue, text: str, meaning: Meaning) -> None:
    reading = read(text, catalogue.lexicon, ARRIVAL)
    assert reading.meaning is meaning, reading.why


@pytest.mark.parametrize(
    ("text", "meaning"),
    [
        ("yes please", M.YES),
        ("no, keep my place", M.NO),
        # "im here" is a yes on en's list; with a question it leaves no one's queue.
        ("I'm here, where do I go?", M.UNKNOWN),
        ("did you get my text? I'm here", M.UNKNOWN),
        ("sí, ¿puedo cambiar la cita?", M.UNKNOWN),
        # An ok alone may only say it was heard: asked again, as a wrong removal costs a
        # waiting customer their place. With a yes or words for leaving, it leaves.
        ("ok", M.UNKNOWN),
        ("blz", M.UNKNOWN),
        ("accha", M.UNKNOWN),
        ("了解です", M.THANKS),  # acknowledged: no removal either
        ("好的", M.UNKNOWN),
        ("ok yes", M.YES),
        ("好的是的", M.YES),
        ("ok remove me", M.YES),
        ("👍", M.YES),
    ],
)
def test_answers_to_leave_the_queue(catalogue: Catalogue, text: str, meaning: Meaning) -> None:
    reading = read(text, catalogue.lexicon, LEAVE)
    assert reading.meaning is meaning, reading.why


@pytest.mark.parametrize(
    ("text", "choice"),
    [
        ("1", 1),
        ("one", 1),
        ("the first one", 1),
        ("second one", 2),
        ("option 1", 1),
        ("It's Mia", 2),
        ("For Mia", 2),
        ("Mia's appointment", 2),
        ("sam", 1),
        ("both", 0),
        ("3", 0),
        ("all of us", 0),
        ("neither", -1),
        ("no", -1),
        ("2️⃣", 2),
    ],
)
def test_choosing_on_a_shared_phone(catalogue: Catalogue, text: str, choice: int) -> None:
    reading = read(text, catalogue.lexicon, PATELS)
    assert (reading.meaning, reading.choice) == (M.CHOICE, choice), reading.why


@pytest.mark.parametrize("text", ["Sam actually Mia", "Sam, I mean Mia", "1, oops I mean 2"])
def test_two_named_with_one_taken_back_is_asked_again(catalogue: Catalogue, text: str) -> None:
    """Not both checked in: one of them was taken back."""
    reading = read(text, catalogue.lexicon, PATELS)
    assert reading.meaning is M.UNKNOWN, reading.why


@pytest.mark.parametrize(
    ("names", "text", "choice"),
    [
        (("佐藤花子", "佐藤太郎"), "花子です", 1),  # a given name inside a run of characters
        (("佐藤花子", "佐藤太郎"), "太郎の分", 2),
        (("王小明", "李华"), "小明的", 1),
        (("김민준", "김서연"), "민준이요", 1),  # a particle after the name
        (("Борис Петров", "Анна Петрова"), "за Бориса", 1),  # an ending on the name
        (("Γιώργος Π", "Ελένη Π"), "τον Γιώργο", 1),
        (("Анна Иванова", "Михаил Иванов"), "Миша", 2),  # a name as it is shortened
        (("William Brooks", "Grace Brooks"), "it's Bill", 1),
        (("Francisco López", "María López"), "Paco", 1),
    ],
)
def test_a_name_with_an_ending_or_inside_characters_chooses(
    catalogue: Catalogue, names: tuple[str, ...], text: str, choice: int
) -> None:
    expecting = Expecting(names=names, everyone=len(names) + 1)
    reading = read(text, catalogue.lexicon, expecting)
    assert (reading.meaning, reading.choice) == (M.CHOICE, choice), reading.why


def test_a_longer_word_is_not_a_name_in_latin_letters(catalogue: Catalogue) -> None:
    expecting = Expecting(names=("Mark Lee", "Rose Lee"), everyone=3)
    for text in ["at the market", "marker"]:
        assert read(text, catalogue.lexicon, expecting).meaning is not M.CHOICE, text


@pytest.mark.parametrize("text", ["佐藤", "Петров", "김"])
def test_a_shared_surname_chooses_no_one(catalogue: Catalogue, text: str) -> None:
    names = {"佐藤": ("佐藤花子", "佐藤太郎"), "Петров": ("Борис Петров", "Анна Петров")}
    expecting = Expecting(names=names.get(text, ("김민준", "김서연")), everyone=3)
    assert read(text, catalogue.lexicon, expecting).meaning is not M.CHOICE


@pytest.mark.parametrize(
    ("names", "text"),
    [
        (("Gabriel Souza", "Gabriela Souza"), "Gabi"),  # short for either
        (("Alejandro Ruiz", "Alexa Ruiz"), "Ale"),
        (("Александр Петров", "Александра Петрова"), "Саша"),  # both are Саша
        (("Samuel Cole", "Samantha Cole"), "Sam"),
    ],
)
def test_a_shortening_two_could_share_chooses_no_one(
    catalogue: Catalogue, names: tuple[str, ...], text: str
) -> None:
    expecting = Expecting(names=names, everyone=3)
    assert read(text, catalogue.lexicon, expecting).meaning is not M.CHOICE


@pytest.mark.parametrize(
    ("text", "arrives"),
    [
        ("I'm here, where are you?", False),  # to someone meeting them, not to the desk
        ("我到了，你在哪个门？", False),
        ("toi roi, anh dang o dau?", False),
        ("I'm here but the gate is closed", False),  # maybe not in
        ("Sí, pero creo que estoy en el edificio equivocado", False),
        ("أنا في المبنى الغلط؟", False),
        ("bhaiya main galat branch aa gaya", False),
        ("दिल्ली पहुँच गई हूँ, अपॉइंटमेंट कल है", False),  # kal: yesterday or tomorrow
        ("I'm here, my appointment is tomorrow right?", False),  # the right day?
        ("我到了，我的预约是明天吧？", False),
        ("Reenviado: Mamá: ya llegué a la clínica", False),  # someone else's words
        ("ya llegué, me han reenviado a la ventanilla 3", True),  # a forward's mark opens
        ("I'm here, which floor?", True),  # a question about the site: here
        ("sono qui, seduta vicino alla finestra", True),
        ("Bin im Wartezimmer, hier richtig voll heute", True),
    ],
)
def test_an_arrival_to_someone_else_or_maybe_elsewhere_is_asked_about(
    catalogue: Catalogue, text: str, arrives: bool
) -> None:
    reading = read(text, catalogue.lexicon)
    assert (reading.meaning is M.ARRIVE) is arrives, reading.why


@pytest.mark.parametrize(
    ("text", "arrives"),
    [
        ("babe I'm here", False),  # news for someone close, sent here by mistake: asked
        ("amor cheguei, vou entrar agora bjs", False),
        ("Schatz bin da, komm runter", False),
        ("Mẹ ơi con tới rồi", False),
        ("妈妈我到了", False),
        ("お母さん、病院着いたよ", False),
        ("mom and I are here", True),  # with them, not writing to them
        ("妈妈和我到了", True),
        ("ママと一緒に着きました", True),
        ("Ma sono qui da mezz'ora", True),  # Italian "but", not a Tagalog "Ma"
        ("habibi wasalt", True),  # said to anyone in Arabic
    ],
)
def test_an_arrival_written_to_someone_close_is_asked_about(
    catalogue: Catalogue, text: str, arrives: bool
) -> None:
    reading = read(text, catalogue.lexicon)
    assert (reading.meaning is M.ARRIVE) is arrives, reading.why


def test_options_alone_is_help_not_a_choice(catalogue: Catalogue) -> None:
    assert read("options", catalogue.lexicon, PATELS).meaning is M.HELP


@pytest.mark.parametrize("word", ["STOP", "stop", " Unsubscribe ", "CANCEL", "end", "QUIT"])
def test_opt_out_words_count_only_as_the_whole_text(catalogue: Catalogue, word: str) -> None:
    assert read(word, catalogue.lexicon).meaning is M.OPT_OUT
    assert read(f"please {word} the appointment", catalogue.lexicon).meaning is not M.OPT_OUT


def test_a_booking_number_is_read_as_digits_or_dictated(catalogue: Catalogue) -> None:
    asked = Expecting(booking_number=True)
    assert read("my booking is #48213", catalogue.lexicon, asked).number == "48213"
    assert read("four five two nine one", catalogue.lexicon, asked).number == "45291"
    assert read("٤٨٢١٣", catalogue.lexicon, asked).number == "48213"


def test_every_reading_says_why(catalogue: Catalogue) -> None:
    reading = read("I'm in the waiting room", catalogue.lexicon)
    assert "'in the waiting room' (en)" in reading.why
    slip = read("hre", catalogue.lexicon)
    assert "read from 'hre'" in slip.why
    assert "in a question" in read("is it here?", catalogue.lexicon).why


def test_text_is_made_comparable() -> None:
    assert plain("Ça VA Dũng") == "ca va dung"
    assert plain("أهلاً") == "اهلا"
    assert prepare("Πού είστε;").clauses[0].asks  # Greek asks with ";"
    assert prepare("I'm here, how long?").clauses[0].asks is False
    assert prepare("我到了").words == ("我到了",)
    # Japanese and Korean runs are one word each, like Chinese: phrases are found inside them.
    assert prepare("今着きました！").words == ("今着きました",)
    assert prepare("지금도착했어요").words == ("지금도착했어요",)


@pytest.mark.parametrize(
    ("text", "scripts"),
    [
        ("Я уже на месте", {"cyrillic"}),
        ("Я вже тут, біля входу", {"cyrillic", "cyrillic_not_russian"}),  # Ukrainian
        ("今着きました", {"han", "kana"}),
        ("ｺﾝﾆﾁﾊ", {"kana"}),  # half-width katakana
        ("도착했어요", {"hangul"}),
        ("وصلت", {"arabic"}),
        ("من رسیدم", {"arabic", "persian_urdu"}),  # Persian: farsi yeh
        ("میں پہنچ گیا ہوں", {"arabic", "persian_urdu"}),  # Urdu
        ("I'm here", set()),
    ],
)
def test_the_script_a_text_is_written_in(text: str, scripts: set[str]) -> None:
    assert prepare(text).scripts == scripts


@pytest.mark.parametrize(
    ("language", "its_own", "others"),
    [
        # Persian and Urdu: in the Arabic script, not in Arabic.
        ("ar", "وصلت", ["من رسیدم", "میں پہنچ گیا ہوں", "سلام، کجا باید بروم؟"]),
        # Ukrainian: in Cyrillic, not in Russian.
        ("ru", "Я уже здесь", ["Я вже на місці", "Дякую, я біля входу", "Де мені чекати?"]),
    ],
)
def test_a_script_is_not_its_usual_language_when_its_letters_say_so(
    catalogue: Catalogue, language: str, its_own: str, others: list[str]
) -> None:
    """A reply in Arabic would not be read by someone who texted in Persian or Urdu, and one
    in Russian is the wrong language for a Ukrainian text."""
    if not catalogue.knows(language):
        pytest.skip(f"no {language} prompts")
    assert read(its_own, catalogue.lexicon).language == language
    for text in others:
        assert read(text, catalogue.lexicon).language != language, text


def test_kanji_alone_is_japanese_when_its_phrases_or_the_conversation_are(
    catalogue: Catalogue,
) -> None:
    if not (catalogue.knows("ja") and catalogue.knows("zh")):
        pytest.skip("no Japanese or Chinese prompts")
    assert read("今着きました", catalogue.lexicon).language == "ja"  # kana
    assert read("到着", catalogue.lexicon).language == "ja"  # only Japanese phrases
    assert read("我到了", catalogue.lexicon).language == "zh"
    assert read("我到了", catalogue.lexicon, prefer="ja").language == "ja"


def test_a_word_two_languages_read_differently_is_read_in_the_conversations(
    catalogue: Catalogue,
) -> None:
    """ "k" is okay in English, "không" (no) in Vietnamese; unsure of the language, ask again."""
    if not catalogue.knows("vi"):
        pytest.skip("no Vietnamese prompts")
    assert read("k", catalogue.lexicon, FORCE, prefer="en").meaning is M.YES
    assert read("k", catalogue.lexicon, FORCE, prefer="vi").meaning is M.NO
    assert read("k", catalogue.lexicon, FORCE).meaning is M.UNKNOWN


def test_the_corpus_is_understood_and_never_checks_in_the_wrong_person(
    catalogue: Catalogue,
) -> None:
    """The labelled corpus (tests/corpus, written as people text, in every language):
    zero wrong check-ins, and at least the bar of right readings, per label and language."""
    examples = corpus.load_examples(corpus.CORPUS)
    results = corpus.run(examples, catalogue.lexicon)
    wrong = [r for r in results if r.wrong_check_in]
    assert not wrong, [(r.example.text, r.example.state, r.got) for r in wrong]
    for language in {e.language for e in examples}:
        group = [r for r in results if r.example.language == language]
        right = sum(r.right for r in group) / len(group)
        assert right >= corpus.BAR, (language, f"{right:.0%}")


def test_quoted_words_are_not_the_senders_own(catalogue: Catalogue) -> None:
    """The instructions quoted back, or an arrival quoted to take it back, are not an arrival
    (in single quotes too); a quoted keyword alone is, and an apostrophe is no quote."""
    quoted = [
        'it says "text HERE when you arrive" ok got it',
        "「着きました」と送ればいいですか",
        "xin lỗi tin 'em tới rồi' là em gửi nhầm cho chồng",
        "sorry το 'ήρθα' ήταν για τον άντρα μου",
        "perdón, ese 'ya llegué' era para mi esposo",
    ]
    for text in quoted:
        assert read(text, catalogue.lexicon).meaning is not M.ARRIVE, text
    for text in ('Texting "HERE" as asked', "'here' pls", "I'm here, it's 10 o'clock"):
        assert read(text, catalogue.lexicon).meaning is M.ARRIVE, text


@pytest.mark.parametrize(
    "name",
    [
        "choice-answers.jsonl",
        "choice-answers-2.jsonl",
        "choice-answers-3.jsonl",
        "choice-answers-4.jsonl",
    ],
)
def test_a_choice_is_never_taken_from_an_answer_that_says_otherwise(
    catalogue: Catalogue, name: str
) -> None:
    """tests/arrivals/choice-answers.jsonl: 543 answers to "who is checking in?" in 15
    languages by a writer who had not seen the lists, 263 of them unclear ("room 3", "3
    minutes away", "somos 2", "not Sam", "Mia? she's parking", "Mia and me", "los dos" of
    three): 212 checked someone in when measured; and 451 more by another writer avoiding
    those shapes ("2 kids with me", "1 - Mia", "господин Петров", "one sec"): 6; and 450 by a
    third about names ("Liam" for a William, "Bia e Biel", "أم خالد": Khalid's mother, "Слава
    богу": thank God, beside a Вячеслав): 19; and 400 by a fourth ("除了娜娜": all but Nana,
    "نحن الاثنان" of three, "ο Στέλιος κι εγώ"): 15. None now but those read either way."""
    # choice-answers-3's clear answers are pet names the bot cannot know (Ferdie, Cettina,
    # Flo) as often as names it can: asked again. choice-answers-4's are corrections ("2...
    # no sorry, 1"), "everyone but X", names in another script: asked again.
    least = {"choice-answers-3.jsonl": 0.6, "choice-answers-4.jsonl": 0.4}.get(name, 0.75)
    _held_to_the_letter(catalogue, name, "choice:", least)


def _held_to_the_letter(catalogue: Catalogue, name: str, given: str, least: float) -> None:
    """A corpus of answers: no check-in but those read either way, and at least `least` of
    the answers that clearly give one (labelled `given`...) read right."""
    results = corpus.run(corpus.load_examples(corpus.ARRIVALS / name), catalogue.lexicon)
    wrong = {r.example.text for r in results if r.wrong_check_in}
    assert wrong <= corpus.READ_EITHER_WAY[name], wrong
    clear = [r for r in results if r.example.expect.startswith(given)]
    assert sum(r.right for r in clear) >= least * len(clear)


@pytest.mark.parametrize(
    "name", ["booking-numbers.jsonl", "booking-numbers-2.jsonl", "booking-numbers-3.jsonl"]
)
def test_a_booking_number_is_never_taken_from_an_answer_that_says_otherwise(
    catalogue: Catalogue, name: str
) -> None:
    """tests/arrivals/booking-numbers.jsonl: 400 answers to "reply with your booking number"
    in 15 languages by a writer who had not seen the lists, 235 of them no booking number to
    check in now (a phone number, a postcode, "not 15608, that's my old one", "72946 or
    72964", "48213 but I'm 20 min away", "cancel 53109", "61425 is for tomorrow", "Ya pagué
    20000 pesos"): 176 were checked in when measured. 400 more by a second writer avoiding
    those shapes ("52318 52318" sent twice, "3km 남았어요 예약번호 28641", a lab's booking, an
    OTP code): 19. 400 by a third ("my wife's is 48213", "вроде 48213", "12345 ㅋㅋㅋ": a laugh,
    "11-30": a date, "vingt-six mille 514"): 18. None now but those read either way; most numbers
    given plainly are read, also spaced, dashed, spelled or in Chinese digits."""
    # The second and third writers' are given inside confirmations pasted whole, stories,
    # with a relative or a room beside them: asked again, as a desk would ask for the number
    # alone.
    least = {"booking-numbers-2.jsonl": 0.5, "booking-numbers-3.jsonl": 0.3}.get(name, 0.75)
    _held_to_the_letter(catalogue, name, "number:", least)


@pytest.mark.parametrize(
    "name",
    [
        "adversarial.tsv",
        "adversarial-2.tsv",
        "adversarial-3.tsv",
        "answers-2.tsv",
        "answers-4.tsv",
        "other-languages.tsv",
        "arrivals-6.tsv",
        "romanised.tsv",
        "answers-are-you-here.tsv",
        "four-languages.tsv",
        "idle-5.tsv",
        "idle-7.tsv",
        "campus.tsv",
        "idle-8.tsv",
        "leave-answers.tsv",
        "leave-answers-2.tsv",
        "leave-answers-3.tsv",
        "typing-noise.tsv",
        "government.tsv",
        "generations.tsv",
        "long.tsv",
        "machine.tsv",
        "idle-9.tsv",
        "answers-5.tsv",
    ],
)
def test_texts_written_to_fool_it_never_check_anyone_in(catalogue: Catalogue, name: str) -> None:
    """tests/arrivals: texts labelled only arrive / not arrive, written by people who had not
    seen the phrase lists (600 in 15 languages made to fool a keyword matcher: someone else
    arrived, arrived elsewhere, a joke, a quote of the instructions, spam with "click here";
    450 more by another writer: "I'm here for you" to a friend, "my ride is here", "text me
    when you're here"; 360 answers to "Are you here now?": "yes?? what do you mean", "ja
    morgen", "はい笑 冗談です"; 490 in German, Russian, Korean and Japanese; 501 more, most
    answers to "check in anyway?"), and 501 answers to "Leave the queue?" ("yes I'm on my
    way", "sí, guárdame el lugar"); 487 more avoiding all those shapes ("the new insurance
    card finally arrived", "I'm in! Sign me up for next week", "made it to level 50 lol
    wrong chat", "Angekommen: nein"); 456 more answers by another writer ("yes, the blue
    Corolla", "はい、外でタバコ吸ってます", "yes if it's quick", "sí, estaba"); 450 more in the
    less covered languages (idioms: "sono arrivata alla frutta", "ピンと来ました", "현타 왔어요",
    "我到了退休年龄"; a rolled eye; "amor cheguei", "Schatz bin da": written to someone
    close); 360 in romanised scripts (Arabizi, Hinglish, pinyin, romaji, Greeklish, Russian in
    Latin letters, Vietnamese without marks, Taglish: "ana hna fi el shoghl", "ya zdes,
    slushayu", "dao le dao le... zai beiwo li 😂"); 400 more answers to "Leave the queue?"
    by a third writer ("remove my son's, keep mine", "I cancelled the Uber, not the
    appointment", "ja, bitte aus dem Newsletter austragen"); 400 more answers to "are you
    here now?" and "check in anyway?" by a fourth writer ("对，她在": yes, she is; "Ja in
    Zehen Minuten"); 400 more with nothing open, as from a clinic's log ("hey babe I'm here,
    which entrance are you at?", "Da bin ich überfragt", spam that "arrived"); 300 from a
    student and benefits desk ("Bin da Leute, in der Bib", "Виза пришла!"); 240 in six
    languages ("सर्दी आ गई है": winter has come; "salary aa gayi"); 420 with phones' typing
    noise (dictation, autocorrect, a wrong keyboard: "z yf vtcnt", "Im here at Olive Garden
    where r u 😂", "Ok" to "Leave the queue?"); 420 from government offices ("estoy en el
    edificio equivocado", "pahuch gya bt gate band hai", "私だけ先に着いてます"); 420 as
    teenagers and their grandparents text ("я тут тип мимо проходила, у меня запись на
    завтра же?", "I have arrived for my 10 o'clock appointment … Regards, Margaret"); 300
    long ones, 150 to 560 characters (complaints about the last visit, a father who "should be
    there by now", "أنا هون، بس مش عندكم"); 360 not typed as answers (a phone's driving
    auto-reply, 'Liked "Are you here now?…"', "Fwd: Mum: I'm here at the clinic", "SYSTEM:
    Kunde ist anwesend. Bitte sofort einchecken."); 360 more with nothing open (a nurse
    starting her shift, a sales rep, a video appointment, a hospital visit: "入院中の父の
    お見舞いに来ました"); 390 more answers ("cancel that" to "Leave the queue?"): no wrong
    check-in or removal but those read either way, most of the rest read."""
    found = corpus.arrivals(corpus.ARRIVALS / name, catalogue.lexicon)
    wrong = {text for _, text, _ in found.wrong}
    assert wrong <= corpus.READ_EITHER_WAY.get(name, set()), found.wrong
    # arrivals-6's were written to be said indirectly ("I'm the one in the yellow raincoat by
    # window 3"): asked "are you here now?", as a desk would ask.
    # leave-answers-3's yeses come with their reasons ("yes remove me, gotta pick up my kid
    # from school", "sí, ya me voy, que pase el siguiente"): a yes to leaving counts only with
    # little beside it, so most are asked again, and a second unclear answer keeps the place.
    # answers-4's yeses mostly say where they sit besides ("yes thank you kindly, sat on the
    # bench by the vending machines"): a yes with more than a word beside it is asked again.
    # other-languages: sixteen languages without a file, where an arrival gets the hint
    # to text HERE; only that nothing else is checked in is asked of it.
    # long's arrivals come with stories, conditions and questions about the last visit:
    # most are asked "are you here now?" (23 of 145 read at once).
    least = {"arrivals-6.tsv": 0.5, "answers-4.tsv": 0.5, "leave-answers-3.tsv": 0.1}
    least["long.tsv"] = 0.1
    least["other-languages.tsv"] = 0.0
    # idle-7's arrivals are said in passing, between appointment details and apologies.
    least["idle-7.tsv"] = least["idle-8.tsv"] = least["idle-9.tsv"] = 0.45
    least["answers-5.tsv"] = 0.5
    least = least.get(name, 0.6)
    assert found.read >= least * found.arrivals, (found.read, found.arrivals)


def test_no_text_without_a_reading(catalogue: Catalogue) -> None:
    for text in ["🙂", "???", "…", "\u200b", "a" * 1600, "١٢٣", "😀" * 50]:
        assert read(text, catalogue.lexicon, NOTHING).why


@pytest.mark.parametrize(
    ("text", "everyone"),
    [
        ("here, both of us", True),
        ("We're all here", False),  # "all" with more besides: it may not be about people
        ("both here", True),
        ("all of us are here", True),
        ("here with everyone", False),
        ("here, all good", False),
        ("here", False),
        ("i'm here with my son", False),
    ],
)
def test_an_arrival_that_says_it_is_everyones(
    catalogue: Catalogue, text: str, everyone: bool
) -> None:
    from bot.understanding import EVERYONE

    reading = read(text, catalogue.lexicon)
    assert reading.meaning is M.ARRIVE, reading.why
    assert (reading.choice == EVERYONE) is everyone, reading.why


def test_remembered_readings_are_the_readings(catalogue: Catalogue) -> None:
    """Short texts' readings are remembered per lexicon (a desk's texts are mostly the same
    few words): read again, in any state and language, a text gets what reading it afresh
    gives, and the memory stays bounded."""
    from bot.understanding import reading as module

    lexicon = load_catalogue(BUILT_IN).lexicon  # its own, with nothing remembered yet
    examples = corpus.load_examples(corpus.CORPUS)
    opens = [NOTHING, ARRIVAL, FORCE, LEAVE, PATELS]
    for example in examples[:400]:
        for expecting in opens:
            for prefer in (None, example.language):
                first = read(example.text, lexicon, expecting, prefer)
                again = read(example.text, lexicon, expecting, prefer)
                fresh = module._read(example.text, lexicon, expecting, prefer)
                assert first == again == fresh, (example.text, expecting, prefer)
    assert 0 < len(lexicon.readings) <= module.REMEMBERED
    long = "here " * 20
    read(long, lexicon)
    assert all(key[0] != long for key in lexicon.readings)
