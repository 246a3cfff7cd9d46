"""A deterministic English sentence grammar for the embedded speech corpus.

Sentences are statements, yes/no and wh- questions, and statements with commas (introductory
phrases, lists, vocatives, joined clauses). Some carry numbers written as digits ("She bought
42 apples."), which the speech says as words, so a character model must learn the mapping.
The vocabulary has several hundred words so that a recogniser has to generalise rather than
memorise. Everything is drawn from ``random.Random(seed)``: the same seed gives the same list.
"""

from __future__ import annotations

import dataclasses
import random

KINDS = ("statement", "question", "comma")
MIN_WORDS, MAX_WORDS = 4, 14

NAMES = (
    "Anna", "Ben", "Clara", "David", "Emma", "Frank", "Grace", "Henry", "Iris", "Jack", "Kate", "Leo",
    "Maria", "Nora", "Oscar", "Paul", "Rosa", "Sam", "Tom", "Vera", "Walter", "Zoe", "Lucy", "Peter",
    "Hannah", "Victor", "Julia", "Martin", "Olivia", "Simon", "Alice", "George", "Helen", "Daniel",
)
# (singular, plural) people nouns.
PEOPLE = tuple((w, w + "s") for w in (
    "farmer", "teacher", "doctor", "driver", "baker", "sailor", "student", "nurse", "pilot", "painter",
    "neighbour", "girl", "boy", "singer", "writer", "cook", "gardener", "guard", "stranger", "visitor",
    "dancer", "fisherman", "king", "queen", "soldier", "clerk", "captain", "player",
)) + (("child", "children"), ("woman", "women"), ("man", "men"), ("person", "people"))
_IRREGULAR_PLURALS = {
    "box": "boxes", "glass": "glasses", "bus": "buses", "brush": "brushes", "dish": "dishes",
    "watch": "watches", "peach": "peaches", "sandwich": "sandwiches", "knife": "knives", "leaf": "leaves",
    "shelf": "shelves", "loaf": "loaves", "city": "cities", "cherry": "cherries", "puppy": "puppies",
    "library": "libraries", "mouse": "mice", "sheep": "sheep", "fish": "fish", "potato": "potatoes",
    "tomato": "tomatoes", "scarf": "scarves", "candy": "candies", "key": "keys", "toy": "toys", "berry": "berries",
}
THINGS = (
    "apple", "bag", "ball", "basket", "bell", "bicycle", "bird", "blanket", "boat", "book", "bottle", "box",
    "bread", "brush", "bucket", "button", "cake", "camera", "candle", "candy", "car", "card", "carpet",
    "cat", "chair", "cherry", "clock", "coat", "coin", "cup", "desk", "dish", "dog", "doll", "door",
    "drum", "egg", "engine", "envelope", "fence", "fish", "flag", "flower", "fork", "glass", "glove",
    "guitar", "hammer", "hat", "helmet", "horse", "jacket", "jar", "kettle", "key", "kite", "knife",
    "ladder", "lamp", "leaf", "lemon", "letter", "lock", "map", "melon", "mirror", "mouse", "nail",
    "necklace", "needle", "onion", "orange", "painting", "pan", "pear", "peach", "pen", "pencil",
    "piano", "picture", "pillow", "plate", "potato", "puppy", "radio", "ring", "rope", "sandwich",
    "scarf", "sheep", "shelf", "shirt", "shoe", "spoon", "stamp", "stone", "suitcase", "sweater",
    "table", "ticket", "tomato", "towel", "toy", "train", "tree", "truck", "umbrella", "vase",
    "violin", "wagon", "watch", "wheel", "window", "berry", "loaf", "whistle", "parcel", "feather",
)
ADJECTIVES = (
    "old", "new", "young", "red", "blue", "green", "yellow", "white", "black", "brown", "small", "large",
    "tiny", "huge", "quiet", "noisy", "bright", "dark", "heavy", "light", "empty", "full", "clean",
    "dirty", "warm", "cold", "wet", "dry", "soft", "hard", "round", "square", "broken", "shiny",
    "strange", "famous", "lucky", "tired", "happy", "angry", "hungry", "sleepy", "clever", "gentle",
    "brave", "careful", "friendly", "lonely", "busy", "lazy", "wooden", "silver", "golden", "purple",
    "striped", "narrow", "wide", "tall", "short", "sweet", "fresh", "rusty", "pretty", "plain",
)
# (base, third person singular, past) transitive verbs taking a thing as object.
TRANSITIVE = (
    ("see", "sees", "saw"), ("find", "finds", "found"), ("buy", "buys", "bought"), ("sell", "sells", "sold"),
    ("carry", "carries", "carried"), ("bring", "brings", "brought"), ("take", "takes", "took"),
    ("move", "moves", "moved"), ("watch", "watches", "watched"), ("wash", "washes", "washed"),
    ("clean", "cleans", "cleaned"), ("paint", "paints", "painted"), ("fix", "fixes", "fixed"),
    ("lose", "loses", "lost"), ("hide", "hides", "hid"), ("count", "counts", "counted"),
    ("drop", "drops", "dropped"), ("lift", "lifts", "lifted"), ("pack", "packs", "packed"),
    ("check", "checks", "checked"), ("collect", "collects", "collected"), ("keep", "keeps", "kept"),
    ("hold", "holds", "held"), ("push", "pushes", "pushed"), ("pull", "pulls", "pulled"),
    ("throw", "throws", "threw"), ("catch", "catches", "caught"), ("draw", "draws", "drew"),
    ("order", "orders", "ordered"), ("borrow", "borrows", "borrowed"), ("return", "returns", "returned"),
    ("want", "wants", "wanted"), ("choose", "chooses", "chose"), ("share", "shares", "shared"),
    ("open", "opens", "opened"), ("close", "closes", "closed"), ("break", "breaks", "broke"),
    ("steal", "steals", "stole"), ("send", "sends", "sent"), ("wrap", "wraps", "wrapped"),
    ("measure", "measures", "measured"), ("weigh", "weighs", "weighed"), ("polish", "polishes", "polished"),
    ("forget", "forgets", "forgot"), ("notice", "notices", "noticed"), ("grab", "grabs", "grabbed"),
)
# (base, third person singular, past) intransitive verbs, followed by a place or time.
INTRANSITIVE = (
    ("walk", "walks", "walked"), ("run", "runs", "ran"), ("sleep", "sleeps", "slept"),
    ("wait", "waits", "waited"), ("sing", "sings", "sang"), ("dance", "dances", "danced"),
    ("work", "works", "worked"), ("play", "plays", "played"), ("swim", "swims", "swam"),
    ("rest", "rests", "rested"), ("sit", "sits", "sat"), ("stand", "stands", "stood"),
    ("laugh", "laughs", "laughed"), ("shout", "shouts", "shouted"), ("travel", "travels", "travelled"),
    ("climb", "climbs", "climbed"), ("arrive", "arrives", "arrived"), ("stay", "stays", "stayed"),
    ("read", "reads", "read"), ("write", "writes", "wrote"), ("cook", "cooks", "cooked"),
    ("listen", "listens", "listened"), ("study", "studies", "studied"), ("smile", "smiles", "smiled"),
    ("hurry", "hurries", "hurried"), ("whisper", "whispers", "whispered"), ("jump", "jumps", "jumped"),
)
PLACES = (
    "garden", "kitchen", "market", "river", "bridge", "forest", "station", "harbour", "village", "school",
    "library", "museum", "hospital", "bakery", "office", "church", "castle", "island", "valley", "beach",
    "mountain", "park", "street", "square", "hall", "farm", "field", "lake", "tower", "hotel", "shop",
    "city", "barn", "cellar", "attic", "corner", "road", "hill", "cafe", "theatre",
)
PREPOSITIONS = ("in", "near", "behind", "beside", "at", "across", "past", "inside", "outside", "by")
TIMES = (
    "yesterday", "today", "tonight", "this morning", "last night", "every day", "at noon", "at dawn",
    "on Monday", "on Tuesday", "on Wednesday", "on Thursday", "on Friday", "on Saturday", "on Sunday",
    "last week", "next week", "in the evening", "in the afternoon", "before lunch", "after dinner",
    "in spring", "in summer", "in autumn", "in winter", "once again", "early", "late",
)
INTRODUCTIONS = (
    "After the rain", "Before dinner", "In the morning", "Later that day", "Just after sunrise",
    "Without a word", "To be honest", "Of course", "Suddenly", "However", "Meanwhile", "Luckily",
    "Sadly", "Finally", "At first", "In the end", "Last summer", "Every morning", "On the way home",
    "Despite the cold", "As usual", "Well", "Yes", "No", "Oh", "Strangely enough", "By the way",
    "After a long walk", "Before the storm", "During the game", "When the bell rang",
    "If it rains tomorrow", "While we waited", "Once the shop opened", "Because it was late",
)
PRONOUNS = (("I", "plural"), ("you", "plural"), ("we", "plural"), ("they", "plural"), ("he", "singular"),
            ("she", "singular"))
OBJECT_PRONOUNS = {"I": "me", "you": "you", "we": "us", "they": "them", "he": "him", "she": "her"}


@dataclasses.dataclass(frozen=True)
class Sentence:
    text: str
    kind: str  # one of KINDS


def plural(noun: str) -> str:
    return _IRREGULAR_PLURALS.get(noun, noun + "s")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _number(rng: random.Random) -> int:
    # Mostly small counts, sometimes hundreds, so number words of every length appear.
    roll = rng.random()
    if roll < 0.6:
        return rng.randint(2, 20)
    if roll < 0.9:
        return rng.randint(21, 99)
    return rng.randint(100, 999)


class _Grammar:
    def __init__(self, rng: random.Random):
        self.rng = rng

    def pick(self, options):
        return self.rng.choice(options)

    def maybe(self, probability: float) -> bool:
        return self.rng.random() < probability

    def adjective(self, probability: float = 0.5) -> str:
        return self.pick(ADJECTIVES) + " " if self.maybe(probability) else ""

    def thing(self) -> str:
        """A definite or indefinite singular, or a plural with or without a count."""
        noun = self.pick(THINGS)
        roll = self.rng.random()
        if roll < 0.4:
            return f"the {self.adjective()}{noun}"
        if roll < 0.6:
            adjective = self.adjective()
            return f"{_article(adjective or noun)} {adjective}{noun}"
        if roll < 0.85:
            return f"{_number(self.rng)} {self.adjective()}{plural(noun)}"
        return f"{self.pick(('some', 'the', 'all the', 'those'))} {self.adjective()}{plural(noun)}"

    def subject(self) -> tuple[str, str]:
        """(phrase, number) where number is 'singular' or 'plural' for verb agreement."""
        roll = self.rng.random()
        if roll < 0.35:
            return self.pick(NAMES), "singular"
        if roll < 0.65:
            return self.pick(PRONOUNS)
        singular, plural_form = self.pick(PEOPLE)
        if self.maybe(0.7):
            return f"the {self.adjective(0.4)}{singular}", "singular"
        return f"the {self.adjective(0.4)}{plural_form}", "plural"

    def place(self) -> str:
        return f"{self.pick(PREPOSITIONS)} the {self.adjective(0.3)}{self.pick(PLACES)}"

    def extra(self) -> str:
        """An optional place and/or time after the verb phrase."""
        parts = []
        if self.maybe(0.45):
            parts.append(self.place())
        if self.maybe(0.3):
            parts.append(self.pick(TIMES))
        return "".join(" " + p for p in parts)

    def predicate(self, number: str) -> str:
        """A finite verb phrase agreeing with ``number``: past, present or future."""
        transitive = self.maybe(0.7)
        base, third, past = self.pick(TRANSITIVE if transitive else INTRANSITIVE)
        tense = self.rng.random()
        if tense < 0.5:
            verb = past
        elif tense < 0.8:
            verb = third if number == "singular" else base
        else:
            verb = f"will {base}"
        if transitive:
            return f"{verb} {self.thing()}{self.extra()}"
        return f"{verb}{self.extra() or ' ' + self.place()}"

    # --- statements ---------------------------------------------------------------------------------
    def statement(self) -> str:
        roll = self.rng.random()
        if roll < 0.6:
            subject, number = self.subject()
            return f"{subject} {self.predicate(number)}."
        if roll < 0.75:
            count = _number(self.rng)
            noun = self.pick(THINGS)
            tense = self.pick(("are", "were"))
            return f"There {tense} {count} {self.adjective()}{plural(noun)} {self.place()}."
        if roll < 0.9:
            noun = self.pick(THINGS)
            verb = self.pick(("is", "was", "looks", "seemed", "felt"))
            degree = self.pick(("very ", "too ", "quite ", ""))
            return f"The {noun} {verb} {degree}{self.pick(ADJECTIVES)}{self.extra()}."
        subject, _ = self.subject()
        negation = self.pick(("did not", "will not", "cannot", "could not", "would never", "should not"))
        base = self.pick(TRANSITIVE)[0]
        return f"{subject} {negation} {base} {self.thing()}{self.extra()}."

    # --- questions ----------------------------------------------------------------------------------
    def yes_no_question(self) -> str:
        subject, number = self.subject()
        roll = self.rng.random()
        if roll < 0.3:
            base = self.pick(TRANSITIVE)[0]
            return f"Did {subject} {base} {self.thing()}{self.extra()}?"
        if roll < 0.45:
            auxiliary = "Does" if number == "singular" else "Do"
            base = self.pick(INTRANSITIVE)[0]
            return f"{auxiliary} {subject} {base} {self.place()}?"
        if roll < 0.6:
            auxiliary = self.pick(("Will", "Can", "Could", "Should", "Would"))
            base = self.pick(TRANSITIVE)[0]
            return f"{auxiliary} {subject} {base} {self.thing()}{self.extra()}?"
        if roll < 0.75:
            noun = self.pick(THINGS)
            return f"{self.pick(('Is', 'Was'))} the {noun} {self.pick(('very ', 'too ', ''))}{self.pick(ADJECTIVES)}?"
        if roll < 0.88:
            count = _number(self.rng)
            return f"{self.pick(('Are', 'Were'))} there {count} {plural(self.pick(THINGS))} {self.place()}?"
        auxiliary = "Has" if number == "singular" else "Have"
        return f"{auxiliary} {subject} seen {self.thing()}{self.extra()}?"

    def wh_question(self) -> str:
        subject, number = self.subject()
        roll = self.rng.random()
        base = self.pick(TRANSITIVE)[0]
        if roll < 0.2:
            return f"{self.pick(('Where', 'When', 'Why', 'How'))} did {subject} {base} {self.thing()}?"
        if roll < 0.35:
            return f"What did {subject} {base} {self.place()}?"
        if roll < 0.5:
            past = self.pick(TRANSITIVE)[2]
            return f"Who {past} {self.thing()}{self.extra()}?"
        if roll < 0.65:
            noun = self.pick(THINGS)
            return f"How many {plural(noun)} did {subject} {base}{self.extra()}?"
        if roll < 0.8:
            noun = self.pick(THINGS)
            return f"Which {noun} will {subject} {base}{self.extra()}?"
        if roll < 0.9:
            noun = self.pick(THINGS)
            return f"Why is the {noun} so {self.pick(ADJECTIVES)}?"
        verb = self.pick(INTRANSITIVE)[0]
        return f"{self.pick(('Where', 'When', 'Why'))} does {self.pick(NAMES)} {verb}?"

    # --- comma sentences ----------------------------------------------------------------------------
    def comma_sentence(self) -> str:
        roll = self.rng.random()
        if roll < 0.45:
            subject, number = self.subject()
            return f"{self.pick(INTRODUCTIONS)}, {subject} {self.predicate(number)}."
        if roll < 0.65:
            items = [self.pick(THINGS) for _ in range(self.rng.randint(3, 4))]
            items = [plural(i) if self.maybe(0.6) else f"{_article(i)} {i}" for i in items]
            subject, _ = self.subject()
            past = self.pick(TRANSITIVE)[2]
            return f"{subject} {past} {', '.join(items[:-1])} and {items[-1]}."
        if roll < 0.8:
            name = self.pick(NAMES)
            base = self.pick(TRANSITIVE)[0]
            return f"{name}, please {base} {self.thing()}{self.extra()}."
        first, first_number = self.subject()
        second, second_number = self.subject()
        joiner = self.pick(("and", "but", "so"))
        return f"{first} {self.predicate(first_number)}, {joiner} {second} {self.predicate(second_number)}."


def _capitalise(text: str) -> str:
    return text[0].upper() + text[1:]


def _clean(text: str) -> str:
    return " ".join(text.split())


def random_sentence(rng: random.Random) -> Sentence:
    """One sentence (any length) drawn from ``rng``: 45% statements, 35% questions, 20% comma."""
    grammar = _Grammar(rng)
    roll = rng.random()
    if roll < 0.45:
        return Sentence(_capitalise(_clean(grammar.statement())), "statement")
    if roll < 0.8:
        question = grammar.yes_no_question() if rng.random() < 0.5 else grammar.wh_question()
        return Sentence(_capitalise(_clean(question)), "question")
    return Sentence(_capitalise(_clean(grammar.comma_sentence())), "comma")


def generate_sentences(count: int, seed: int) -> list[Sentence]:
    """``count`` distinct sentences of MIN_WORDS..MAX_WORDS words, deterministic in ``seed``."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    rng = random.Random(seed)
    seen, sentences = set(), []
    attempts = 0
    while len(sentences) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise RuntimeError(f"could only find {len(sentences)} distinct sentences out of {count}")
        sentence = random_sentence(rng)
        if MIN_WORDS <= len(sentence.text.split()) <= MAX_WORDS and sentence.text not in seen:
            seen.add(sentence.text)
            sentences.append(sentence)
    return sentences
