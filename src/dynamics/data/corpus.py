"""A synthetic sentiment corpus for a tiny masked-language model (task ``ntk_prompt``), built locally.

Everything is a deterministic function of an integer seed (numpy ``default_rng((seed, stream))``);
nothing is downloaded. Pure numpy, no JAX.

**Vocabulary** (``VOCAB``, 61 tokens): the specials ``[PAD] [CLS] [SEP] [MASK]`` (ids 0–3), the
template words ``it was .``, the label words ``terrible great`` (class 0 = negative, 1 = positive), 20
sentiment words (10 per polarity), 6 neutral adjectives that also follow "it was", 26 neutral words.

**Sentences**: 2–6 words, a shuffled mix of neutral words and 1–5 sentiment words whose majority
polarity is the sentence's label (counts of (label, opposite) polarity words drawn from
``SENTIMENT_COUNTS``, so some sentences are mixed). Each polarity's lexicon has a *template* part (the
first ``TEMPLATE_SENTIMENT`` = 8 words) and a *generic-only* part (2 words).

**Pre-training texts** (``pretraining_corpus``), each ``[CLS] … [SEP]`` padded with ``[PAD]``:

- a fraction ``template_fraction`` (default 0.8): a sentence of template-part sentiment words followed
  by ``it was <label word> .``, the label word agreeing with the sentiment (``great`` / ``terrible``);
- a fraction ``other_fraction`` (0.1): a sentence followed by ``it was <neutral adjective> .`` (the slot
  after "it was" is not always a label word);
- the rest (0.1): a bare sentence (generic text) from the whole lexicon.

The generic-only sentiment words never precede the template in pre-training: their polarity can only
be learned from co-occurrence with other sentiment words in generic text, so the prompt's zero-shot
accuracy stays below 1 and fine-tuning has something to learn.

**Downstream inputs** (``downstream``): fresh sentences from the whole lexicon with balanced labels
(streams ``train`` and ``test``), as ``prompt_inputs`` (``[CLS] <sentence> it was [MASK] . [SEP]``) or
``plain_inputs`` (``[CLS] <sentence> [SEP]``, for a classification head on ``[CLS]``).
"""

from typing import NamedTuple

import numpy as np

SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")
TEMPLATE_WORDS = ("it", "was", ".")
LABEL_WORDS = ("terrible", "great")  # index = class: 0 negative, 1 positive
POSITIVE = ("good", "fun", "lovely", "superb", "charming", "brilliant", "moving", "witty",  # template
            "fresh", "enjoyable")  # generic-only
NEGATIVE = ("bad", "dull", "awful", "boring", "weak", "clumsy", "tedious", "bland",
            "messy", "stale")
TEMPLATE_SENTIMENT = 8  # the first 8 words of each polarity appear before the template in pre-training
NEUTRAL_ADJECTIVES = ("long", "short", "new", "old", "loud", "quiet")
NEUTRAL = ("the", "a", "movie", "film", "plot", "story", "cast", "acting", "music", "ending", "script",
           "scenes", "director", "and", "with", "is", "very", "quite", "really", "this", "its", "of",
           "in", "but", "too", "so")
VOCAB = SPECIALS + TEMPLATE_WORDS + LABEL_WORDS + POSITIVE + NEGATIVE + NEUTRAL_ADJECTIVES + NEUTRAL
TOKEN_ID = {token: i for i, token in enumerate(VOCAB)}
PAD, CLS, SEP, MASK = (TOKEN_ID[t] for t in SPECIALS)
LABEL_IDS = tuple(TOKEN_ID[w] for w in LABEL_WORDS)
TEMPLATE_IDS = tuple(TOKEN_ID[w] for w in TEMPLATE_WORDS)  # it, was, .

MIN_WORDS, MAX_WORDS = 2, 6
# (words of the label's polarity, words of the other polarity): the majority decides the label
SENTIMENT_COUNTS = ((1, 0), (2, 0), (2, 1), (3, 1), (3, 2))
MAX_LEN = MAX_WORDS + 6  # [CLS] sentence it was X . [SEP]
STREAMS = {"pretrain": 0, "train": 1, "test": 2}


class Downstream(NamedTuple):
    """A labelled downstream split: token-id sentences (without specials) and labels (0 neg, 1 pos)."""

    sentences: list[list[int]]
    labels: np.ndarray


def _ids(words) -> list[int]:
    return [TOKEN_ID[w] for w in words]


_LEXICON = {  # (polarity, template_only) -> token ids
    (1, True): _ids(POSITIVE[:TEMPLATE_SENTIMENT]), (1, False): _ids(POSITIVE),
    (0, True): _ids(NEGATIVE[:TEMPLATE_SENTIMENT]), (0, False): _ids(NEGATIVE),
}
_NEUTRAL_IDS = np.array(_ids(NEUTRAL))
_NEUTRAL_ADJ_IDS = np.array(_ids(NEUTRAL_ADJECTIVES))


def decode(ids) -> str:
    """Tokens of ``ids`` joined by spaces, padding dropped."""
    return " ".join(VOCAB[i] for i in np.asarray(ids).tolist() if i != PAD)


def sentence(rng: np.random.Generator, label: int, *, template_lexicon: bool = False) -> list[int]:
    """One sentence (token ids, no specials) whose majority sentiment polarity is ``label``."""
    same, other = SENTIMENT_COUNTS[rng.integers(len(SENTIMENT_COUNTS))]
    length = int(rng.integers(max(MIN_WORDS, same + other), MAX_WORDS + 1))
    words = (list(rng.choice(_LEXICON[(label, template_lexicon)], same))
             + list(rng.choice(_LEXICON[(1 - label, template_lexicon)], other))
             + list(rng.choice(_NEUTRAL_IDS, length - same - other)))
    return [int(w) for w in rng.permutation(words)]


def _pad(rows: list[list[int]], max_len: int) -> np.ndarray:
    out = np.full((len(rows), max_len), PAD, np.int32)
    for i, row in enumerate(rows):
        if len(row) > max_len:
            raise ValueError(f"a sequence of {len(row)} tokens does not fit max_len={max_len}")
        out[i, :len(row)] = row
    return out


def pretraining_corpus(seed: int, n: int, *, template_fraction: float = 0.8,
                       other_fraction: float = 0.1, max_len: int = MAX_LEN) -> np.ndarray:
    """``n`` pre-training sequences ``(n, max_len)`` int32 (see the module docstring)."""
    if not (0 <= template_fraction and 0 <= other_fraction and template_fraction + other_fraction <= 1):
        raise ValueError("template_fraction and other_fraction must be >= 0 with a sum <= 1")
    rng = np.random.default_rng((seed, STREAMS["pretrain"]))
    rows = []
    for _ in range(n):
        label = int(rng.integers(2))
        u = rng.random()
        if u < template_fraction:
            words = sentence(rng, label, template_lexicon=True) + [TEMPLATE_IDS[0], TEMPLATE_IDS[1],
                                                                   LABEL_IDS[label], TEMPLATE_IDS[2]]
        elif u < template_fraction + other_fraction:
            words = sentence(rng, label) + [TEMPLATE_IDS[0], TEMPLATE_IDS[1],
                                            int(rng.choice(_NEUTRAL_ADJ_IDS)), TEMPLATE_IDS[2]]
        else:
            words = sentence(rng, label)
        rows.append([CLS] + words + [SEP])
    return _pad(rows, max_len)


def downstream(seed: int, split: str, n: int) -> Downstream:
    """``n`` labelled sentences of split ``train`` or ``test``; labels alternate 0, 1, 0, … (balanced)."""
    rng = np.random.default_rng((seed, STREAMS[split]))
    labels = np.arange(n, dtype=np.int32) % 2
    return Downstream([sentence(rng, int(y)) for y in labels], labels)


def prompt_inputs(sentences: list[list[int]], max_len: int = MAX_LEN) -> np.ndarray:
    """``[CLS] <sentence> it was [MASK] . [SEP]``, padded: ``(N, max_len)`` int32."""
    it, was, dot = TEMPLATE_IDS
    return _pad([[CLS] + s + [it, was, MASK, dot, SEP] for s in sentences], max_len)


def plain_inputs(sentences: list[list[int]], max_len: int = MAX_LEN) -> np.ndarray:
    """``[CLS] <sentence> [SEP]``, padded: ``(N, max_len)`` int32."""
    return _pad([[CLS] + s + [SEP] for s in sentences], max_len)
