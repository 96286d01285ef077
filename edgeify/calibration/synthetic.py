"""Text that edgeify generates itself, for the offline starter models.

A small grammar of product and film reviews. The sentiment label follows from the words,
including negation ("not good" is negative) and contrast ("good but slow" takes the
clause after "but"), so a model has to read word order, not only count words.
"""

from __future__ import annotations

import random

LABELS = ("negative", "positive")

_SUBJECTS = [
    "the movie", "this film", "the phone", "my new laptop", "the hotel", "the service",
    "the food", "this book", "the camera", "the app", "the battery", "the screen",
    "our waiter", "the plot", "the soundtrack", "the delivery", "the keyboard", "the room",
    "the staff", "the update", "this album", "the coffee", "the game", "the show",
]
_POSITIVE = [
    "good", "great", "excellent", "wonderful", "fantastic", "reliable", "friendly",
    "delightful", "fast", "brilliant", "comfortable", "amazing", "pleasant", "solid",
    "charming", "superb", "lovely", "impressive", "clean", "useful",
]
_NEGATIVE = [
    "bad", "terrible", "awful", "boring", "slow", "broken", "rude", "disappointing",
    "noisy", "horrible", "dull", "poor", "buggy", "dirty", "weak", "useless", "annoying",
    "mediocre", "painful", "cheap",
]
_LINK = ["was", "is", "seemed", "felt", "turned out", "looked"]
_INTENS = ["", "", "really ", "very ", "quite ", "truly ", "so ", "rather "]
_OPENERS = ["", "", "", "honestly, ", "overall ", "i think ", "to be fair, ", "sadly, ", "well, "]
_TAILS = ["", "", ".", "!", " and i would say so again.", " this time.", " for the price.",
          " in my opinion.", " to be honest.", " after a week."]
_NEUTRAL_FILL = [
    "we arrived on monday", "it came in a blue box", "i used it for two days",
    "the room faced the street", "there were many people", "the price was in euros",
    "it rained all afternoon", "my friend came along", "we watched it at home",
]


def _clause(rng: random.Random) -> tuple[str, int]:
    polarity = rng.randrange(2)
    word = rng.choice(_POSITIVE if polarity else _NEGATIVE)
    negated = rng.random() < 0.3
    link = rng.choice(_LINK)
    text = f"{rng.choice(_SUBJECTS)} {link} {'not ' if negated else ''}{rng.choice(_INTENS)}{word}"
    return text, polarity ^ int(negated)


def review(rng: random.Random) -> tuple[str, int]:
    """One sentence and its label (0 negative, 1 positive)."""
    first, label = _clause(rng)
    r = rng.random()
    if r < 0.25:
        second, label = _clause(rng)
        text = f"{first} but {second}"
    elif r < 0.45:
        text = f"{rng.choice(_NEUTRAL_FILL)}, {first}"
    else:
        text = first
    return f"{rng.choice(_OPENERS)}{text}{rng.choice(_TAILS)}", label


def labelled_reviews(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text, label = review(rng)
        out.append((text, LABELS[label]))
    return out


def paragraphs(n: int, seed: int = 0) -> list[str]:
    """Unlabelled text for causal-LM starters: paragraphs of 3-8 reviews."""
    rng = random.Random(seed)
    return [" ".join(review(rng)[0] for _ in range(rng.randint(3, 8))) for _ in range(n)]
