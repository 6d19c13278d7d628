"""Third-person pronoun rewriting for gender counterfactuals (`counterfactual.py`): a she/her
or he/him narrative rewritten as he/him, she/her or singular they/them.

A module of its own because it is a self-contained heuristic over tokens (word lists, the
ambiguous "her" and "his", verb agreement for singular "they") that needs neither profiles
nor the data file. `rewrite_pronouns` documents the rules and where they can still go wrong.

`CounterfactualError` is defined here, in the lowest module that raises it, so that
`counterfactual.py` can raise it too without an import cycle.
"""

from __future__ import annotations

import re
from typing import Literal

from therapygym.errors import TherapygymError


class CounterfactualError(TherapygymError):
    """A counterfactual that cannot be made from this profile (the message says why)."""


Role = Literal["subj", "obj", "det", "pron", "refl"]
PRONOUNS: dict[str, dict[Role, str]] = {
    "she/her": {"subj": "she", "obj": "her", "det": "her", "pron": "hers", "refl": "herself"},
    "he/him": {"subj": "he", "obj": "him", "det": "his", "pron": "his", "refl": "himself"},
    "they/them": {
        "subj": "they",
        "obj": "them",
        "det": "their",
        "pron": "theirs",
        "refl": "themself",
    },
}


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Source words and their roles; None: ambiguous, decided by `_her_role` / `_his_role`.
_SOURCE: dict[str, dict[str, Role | None]] = {
    "she/her": {"she": "subj", "her": None, "hers": "pron", "herself": "refl"},
    "he/him": {"he": "subj", "him": "obj", "his": None, "himself": "refl"},
}

# A word after "her" that makes it an object ("told her to", "with her and", "her again");
# anything else that is a word makes "her" possessive ("her husband", "her own").
_OBJECT_NEXT = _wordset(
    """a an the this that these those some any every each all no another both either neither
    much many more several enough to in on at for from with without about into onto over
    under up down out off away through across after before since until till by of around
    behind like than as near towards toward against between during upon via and or but nor so
    yet if when while because although though whether once where what who whom why how which
    i you he she it we they me him us them my your his its our their again too also anymore
    now then there here home today tonight tomorrow yesterday twice alone instead anyway
    sometimes always never still already later just even not very well less that's had has
    have was is were would could will can did does should might must may shall"""
)
# A word after "his" that makes it a pronoun ("the choice was his, not ...", "his to keep").
_PRONOUN_NEXT = _wordset(
    """and or but nor to not too either anyway now then as than that which who when because
    if so is was were"""
)
# Words ending in -ly that are adjectives or nouns, not adverbs ("her elderly mother").
_LY_NOT_ADVERB = _wordset(
    """family early elderly only lovely friendly lonely ugly daily weekly monthly yearly
    nightly hourly likely silly holy jolly curly belly bully ally rally reply supply
    assembly july italy costly deadly orderly timely unruly worldly lively lowly"""
)
# "made her eat", "let her go", "heard her cry": after these verbs, "her" + one of the base
# verbs below is an object.
_CAUSATIVE = _wordset(
    """make makes made making let lets letting help helps helped helping watch watches watched
    watching see sees saw seen seeing hear hears heard hearing bid bids"""
)
_BASE_VERBS = _wordset(
    """be go eat sleep feel leave stay cry think do come see talk speak stop rest breathe sit
    lie take get understand know fall work try use drive walk wait laugh smile say tell ask
    answer move change cope calm relax panic shake"""
)
# Between a subject and its verb: skipped when making the verb agree with singular "they".
_ADVERBS = _wordset(
    """still never also always often sometimes usually only just really even rarely seldom
    barely hardly already now then mostly ever again nearly almost no longer quietly
    simply"""
)
_NOT_VERB_S = _wordset(
    """always sometimes perhaps afterwards towards nevertheless nonetheless thus less unless
    besides yes plus as its this us"""
)
_AGREE = {
    "is": "are",
    "was": "were",
    "has": "have",
    "does": "do",
    "goes": "go",
    "isn't": "aren't",
    "wasn't": "weren't",
    "hasn't": "haven't",
    "doesn't": "don't",
}
_PARTICIPLES = _wordset(
    """been got gotten had done gone seen made taken given become come left lost kept told
    said found felt heard known thought tried stopped started decided begun spent missed moved
    stayed written eaten fallen broken"""
)
_WH = _wordset("what why how where when who whom which")
# Coordinated verbs of the same subject ("they live with ... and manages" -> "and manage"):
# only these, after a comma or a conjunction, since many -s words are also plural nouns.
_COORD_VERBS = _wordset(
    """is was has does isn't wasn't hasn't doesn't sees manages sleeps feels thinks says wants
    knows worries avoids seems keeps gets goes takes makes believes blames hides spends tries
    lives eats refuses admits denies insists describes mentions becomes stays wakes asks tells
    finds gives comes continues struggles apologises apologizes explains agrees needs drives"""
)
_COORDINATORS = _wordset("and but or then yet ,")
# Where a clause with another subject may begin: the scan for coordinated verbs stops.
_SENTENCE_END = _wordset(". ; : ! ? i he she we they")
# A subordinate clause (its verbs have another subject) runs to the next comma.
_SUBORDINATORS = _wordset(
    "that who which when where because if while since although though until unless whether"
)
_QUOTES = _wordset('" “ ”')
_TOKEN = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*|\d+|\s+|.", re.S)
_CONTRACTION = re.compile(r"^(she|he)(['’])(s|d|ll)$", re.I)


def _is_word(token: str | None) -> bool:
    return bool(token) and (token[0].isalpha())  # type: ignore[index]


def _match_case(source: str, word: str) -> str:
    if len(source) > 1 and source.isupper():
        return word.upper()
    if source[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _low(token: str) -> str:
    return token.lower().replace("’", "'")


class _Tokens:
    def __init__(self, text: str) -> None:
        self.items = _TOKEN.findall(text)
        self.quoted = []  # inside double quotes: someone's own words, left alone
        inside = False
        for token in self.items:
            if token == "“" or (token == '"' and not inside):
                self.quoted.append(inside)
                inside = True
            elif token in ("”", '"'):
                self.quoted.append(inside)
                inside = False
            else:
                self.quoted.append(inside)

    def next(self, i: int) -> int | None:
        """Index of the next non-space token after i."""
        j = i + 1
        while j < len(self.items) and self.items[j].isspace():
            j += 1
        return j if j < len(self.items) else None

    def prev(self, i: int) -> int | None:
        j = i - 1
        while j >= 0 and self.items[j].isspace():
            j -= 1
        return j if j >= 0 else None

    def word(self, i: int | None) -> str | None:
        return None if i is None else self.items[i]


def _ly_adverb(word: str) -> bool:
    low = _low(word)
    return low.endswith("ly") and low not in _LY_NOT_ADVERB


def _adverb(word: str) -> bool:
    return _low(word) in _ADVERBS or _ly_adverb(word)


def _her_role(tokens: _Tokens, i: int) -> Role:
    nxt = tokens.word(tokens.next(i))
    if nxt is None or not (_is_word(nxt) or nxt.isdigit()):
        return "obj"  # end of text or punctuation: "told her.", "with her,"
    if nxt.isdigit():
        return "det"  # "her 14-year-old", "her 70s"
    low = _low(nxt)
    if low in _OBJECT_NEXT or _ly_adverb(nxt):
        return "obj"
    before = tokens.word(tokens.prev(i))
    if before and _low(before) in _CAUSATIVE and low in _BASE_VERBS:
        return "obj"
    return "det"


def _his_role(tokens: _Tokens, i: int) -> Role:
    nxt = tokens.word(tokens.next(i))
    if nxt is None or not (_is_word(nxt) or nxt.isdigit()):
        return "pron"  # "the choice was his."
    return "pron" if _low(nxt) in _PRONOUN_NEXT else "det"


def _plural_verb(word: str) -> str | None:
    """The plural (they-) form of a third-person singular verb, or None if `word` is not one."""
    low = _low(word)
    if low in _AGREE:
        return _match_case(word, _AGREE[low])
    if (
        low in _NOT_VERB_S
        or "'" in low
        or not low.endswith("s")
        or low.endswith(("ss", "us", "is"))
    ):
        return None
    if low.endswith("ies") and len(low) > 4:
        return word[:-3] + "y"
    if re.search(r"(ch|sh|x|zz|ss|o)es$", low):
        return word[:-2]
    return word[:-1]


def _skip_quotes(tokens: _Tokens, j: int | None) -> int | None:
    while j is not None and tokens.items[j] in _QUOTES:
        j = tokens.next(j)
    return j


def _fragment(tokens: _Tokens, i: int) -> bool:
    """Whether subject i sits in a note-style sentence with no subject of its own ("Says
    she ..., and has ..."): a later verb may then belong to the note's implied subject."""
    j = tokens.prev(i)
    first = None
    while j is not None and tokens.items[j] not in (".", ";", ":", "!", "?"):
        if _is_word(tokens.items[j]):
            first = tokens.items[j]
        j = tokens.prev(j)
    if first is None:
        return False
    low = _low(first)
    return low.endswith("s") and low not in _NOT_VERB_S | {"his", "hers", "its", "this", "was",
                                                          "is", "has", "does"}  # fmt: skip


def _agree_after(tokens: _Tokens, i: int) -> None:
    """Make the verb after subject i agree with singular "they" (skipping adverbs and an
    opening quote), and the verbs coordinated with it."""
    j = _skip_quotes(tokens, tokens.next(i))
    while j is not None and _is_word(tokens.items[j]) and _adverb(tokens.items[j]):
        j = _skip_quotes(tokens, tokens.next(j))
    if j is None or not _is_word(tokens.items[j]):
        return
    tokens.items[j] = _plural_verb(tokens.items[j]) or tokens.items[j]
    if _fragment(tokens, i):
        return
    before = tokens.word(tokens.prev(i))
    relative = before is not None and _low(before) in _SUBORDINATORS | {"whom"}
    k = tokens.next(j)  # coordinated verbs: "they live ... and manage", "..., sleep little"
    while k is not None and _low(tokens.items[k]) not in _SENTENCE_END:
        low = _low(tokens.items[k])
        if relative and low == ",":  # "whom they raised, was killed": the clause is over
            return
        if low in _SUBORDINATORS:  # to the end of the clause
            while k is not None and tokens.items[k] not in (",", ".", ";", "!", "?"):
                k = tokens.next(k)
            continue
        if low in _COORDINATORS and not tokens.quoted[k]:
            m = tokens.next(k)
            while m is not None and (_adverb(tokens.items[m]) or _low(tokens.items[m]) == "not"):
                m = tokens.next(m)
            verb = _low(tokens.items[m]) if m is not None else ""
            if low == "," and verb in _AGREE:  # ", was killed" is rarely our subject's
                verb = ""
            if m is not None and verb in _COORD_VERBS and not tokens.quoted[m]:
                tokens.items[m] = _plural_verb(tokens.items[m]) or tokens.items[m]
        k = tokens.next(k)


def _agree_inverted(tokens: _Tokens, i: int) -> None:
    """Make "Does she ...?" read "Do they ...?": an auxiliary right before the subject, at
    the start of a sentence or after a wh-word."""
    j = tokens.prev(i)
    if j is None or _low(tokens.items[j]) not in ("is", "was", "has", "does", "isn't",
                                                  "wasn't", "hasn't", "doesn't"):  # fmt: skip
        return
    k = tokens.prev(j)
    before = tokens.word(k)
    if (
        before is None
        or (not _is_word(before) and before in ".?!;:\"'(“‘—–")
        or (_low(before) in _WH)
    ):
        tokens.items[j] = _plural_verb(tokens.items[j]) or tokens.items[j]


def rewrite_pronouns(text: str, source: str, target: str) -> str:
    """Rewrite the third-person pronouns of `source` ("she/her" or "he/him") as `target`
    ("she/her", "he/him" or "they/them"), keeping capitalisation (She -> He, HER -> HIM).

    The word map: she -> he / they; herself -> himself / themself; hers -> his / theirs;
    he -> she / they; him -> her / them; himself -> herself / themself; contractions follow
    (she's -> he's, she'd -> they'd). Two source words are ambiguous and decided by the next
    word:

    * **her** is possessive (-> his / their) when a word follows that is not a function word
      (preposition, conjunction, article, pronoun or common adverb, e.g. "to", "and", "the",
      "again") and not an adverb in -ly ("her husband", "her own", "her elderly mother",
      "her 14-year-old"); otherwise it is an object (-> him / them: "told her to", "with
      her.", "supports her emotionally"). After make / let / help / see / hear / watch, "her"
      followed by a base verb from a short list is an object ("made her eat", "let her go").
    * **his** is a possessive pronoun (-> hers / theirs) at the end of a clause or before a
      function word ("the choice was his."), otherwise a determiner (-> her / their).

    For "they/them" the verb after the subject is made plural ("she worries" -> "they worry",
    "he has" -> "they have", "she's tired" -> "they're tired", "she's been" -> "they've
    been"), skipping adverbs in between ("he still sends" -> "they still send"), and an
    auxiliary before the subject at the start of a question agrees ("Does she" -> "Do they").

    Where it can still go wrong: pronouns that refer to someone else of the patient's gender
    are rewritten too ("her prayers for her" cannot tell the patient from her late mother);
    a swap can leave two people with the same pronouns, so the text is correct but its
    referents less clear ("He shouted that he was wasting his money"); "her" before a bare
    noun object reads as possessive ("gave her flowers" -> "gave his flowers"), and before an
    adjective not in -ly ("found her tired") likewise; with "they", a second verb of the same
    subject agrees only if it follows a comma or conjunction and is in a short list of verbs
    that are rarely nouns ("they live here and manage"; "she checks her phone and fears"
    keeps "fears"), and not at all in a note-style sentence without a subject of its own
    ("Says he is fine and has no plan" keeps "has", which may be the note's); words inside
    double quotes are taken as someone's own and left alone, which is right for a partner's
    "grabbed him" and wrong for a quoted self-description such as "what her hands might do"
    (the verb right after a subject still agrees: 'she "was"' -> 'they "were"'). Gendered
    nouns ("mother", "wife") are never changed here (see `gender_rules.self_phrases`).
    """
    if source not in _SOURCE:
        raise CounterfactualError(
            f"pronouns '{source}' cannot be rewritten: only she/her and he/him profiles get "
            "gender counterfactuals (singular and plural 'they' cannot be told apart)"
        )
    if target not in PRONOUNS:
        raise CounterfactualError(f"unknown target pronouns '{target}'")
    if source == target:
        return text
    words = _SOURCE[source]
    forms = PRONOUNS[target]
    plural = target == "they/them"
    tokens = _Tokens(text)
    for i, token in enumerate(tokens.items):
        if not _is_word(token) or tokens.quoted[i]:
            continue
        low = _low(token)
        contraction = _CONTRACTION.match(low)
        if contraction and contraction.group(1) in words:
            suffix = contraction.group(3)
            if plural and suffix == "s":
                nxt = _skip_quotes(tokens, tokens.next(i))
                while nxt is not None and _adverb(tokens.items[nxt]):
                    nxt = _skip_quotes(tokens, tokens.next(nxt))
                after = _low(tokens.items[nxt]) if nxt is not None else ""
                suffix = "ve" if after in _PARTICIPLES else "re"
            apostrophe = token[len(contraction.group(1))]
            tokens.items[i] = (
                _match_case(token, forms["subj"])
                + apostrophe
                + (suffix.upper() if token.isupper() else suffix)
            )
            continue
        if low not in words:
            continue
        role = words[low]
        if role is None:
            role = _her_role(tokens, i) if low == "her" else _his_role(tokens, i)
        tokens.items[i] = _match_case(token, forms[role])
        if role == "subj" and plural:
            _agree_after(tokens, i)
            _agree_inverted(tokens, i)
    return "".join(tokens.items)
