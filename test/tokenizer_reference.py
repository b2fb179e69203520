#!/usr/bin/env python3
"""tokenizer_reference.py: tokenizer.c against the golden ids and against a Python re-implementation of both modes.

    /usr/bin/python3 test/tokenizer_reference.py MODEL.t2v TOKENIZER_DIR --t2v BIN --driver BIN [-n N]

MODEL.t2v is exported from the folder whose tokenizer/ is TOKENIZER_DIR (vocab.json, merges.txt,
special_tokens_map.json, tokenizer_config.json). Checks:
  1. golden: `t2v tokenize MODEL PROMPT [--tokenizer openclip]` on every prompt of tokens.json (next to
     TOKENIZER_DIR's model folder, or --tokens): diffusers mode must give hf_slow_noftfy_ids_emulated where
     a prompt has it, else ids; openclip mode must give ids.
  2. reference: the batch driver (tokenize_batch.c) against the Python reference below on generated prompts
     (accents, decomposed accents, CJK, Hangul, emoji, HTML entities, controls, odd spaces, '!', special
     tokens, invalid UTF-8...), all ids (not just the first 77) and the untruncated length.
  3. robustness: invalid UTF-8, empty, whitespace-only, 100 KB prompts (no crash; time under a second;
     compared with the reference where Python's own quadratic BPE is fast enough).
Exit status 0 when everything matches. make test (test/run_tests.py) builds both binaries (the driver,
test/tokenize_batch.c, with t2v.c compiled with -DTESTING) and runs this script.

The reference mirrors the Python it stands for: transformers' CLIPTokenizer without ftfy (PreTrainedTokenizer
.tokenize's added-token Trie, BasicTokenizer, CLIPTokenizer.bpe) and openai/CLIP's simple_tokenizer with
ftfy.fix_text as identity. The regex is the `regex` module's when installed; otherwise Python's `re` with
explicit classes from unicodedata (the literals under (?i:...), the classes as `regex` matches them under
IGNORECASE: it leaves U+0345 out of both [\\p{L}] and [^\\s\\p{L}\\p{N}]).
"""
import argparse
import html
import json
import os
import random
import struct
import subprocess
import sys
import unicodedata

# CLIP's byte -> character table is data, not logic: take it from export.py, which writes it into the model file.
# (The golden ids in tokens.json come from the real tokenizers, so a wrong table would still be caught.)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import export  # noqa: E402

CLIP_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


# ---------------------------------------------------------------------------------------------
# The regex: the `regex` module, or `re` with explicit classes

def _class_string(pred):
    """A [...] body matching the code points where pred holds, as ranges."""
    parts, start = [], None
    for c in range(0x110001):
        ok = c < 0x110000 and pred(c)
        if ok and start is None:
            start = c
        elif not ok and start is not None:
            a, b = start, c - 1
            parts.append(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}")
            start = None
    return "".join(parts)


def compile_patterns():
    """(CLIP pattern, whitespace pattern), both with a .findall / .sub like regex's."""
    try:
        import regex
        return (regex.compile(CLIP_PATTERN, regex.IGNORECASE), regex.compile(r"\s+"),
                f"regex {regex.__version__}")
    except ImportError:
        import re
    cat = [unicodedata.category(chr(c)) for c in range(0x110000)]

    def space(c):  # the Unicode White_Space property: str.isspace less the information separators
        return chr(c).isspace() and not 0x1C <= c <= 0x1F

    def letter(c):
        return cat[c][0] == "L"

    def number(c):
        return cat[c][0] == "N"

    def other(c):
        if space(c) or letter(c) or number(c):
            return False
        ch = chr(c)
        return not any(len(v) == 1 and unicodedata.category(v)[0] in "LN"
                       for v in (ch.lower(), ch.upper(), ch.casefold(), ch.title()))

    pattern = (r"(?i:<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d)"
               f"|[{_class_string(letter)}]+|[{_class_string(number)}]|[{_class_string(other)}]+")
    return re.compile(pattern), re.compile(f"[{_class_string(space)}]+"), "re with unicodedata classes"


# ---------------------------------------------------------------------------------------------
# Byte-level BPE, shared by both tokenizers (CLIPTokenizer.bpe == simple_tokenizer.bpe)

class ClipBPE:
    def __init__(self, folder):
        with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(os.path.join(folder, "merges.txt"), encoding="utf-8") as f:
            merges = f.read().strip().split("\n")[1:49152 - 256 - 2 + 1]
        self.ranks = dict(zip([tuple(m.split()) for m in merges], range(len(merges))))
        self.byte_encoder = {b: chr(c) for b, c in export.bytes_to_unicode_table().items()}
        self.cache = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}
        config = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    config.update(json.load(f))

        def token(key, default):
            v = config.get(key, default)
            return v["content"] if isinstance(v, dict) else v
        self.bos, self.eos = token("bos_token", "<|startoftext|>"), token("eos_token", "<|endoftext|>")
        self.unk, self.pad = token("unk_token", "<|endoftext|>"), token("pad_token", "<|endoftext|>")

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            bigram = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if bigram not in self.ranks:
                break
            first, second = bigram
            new, i = [], 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new.extend(word[i:])
                    break
                new.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new.append(first + second)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
        return " ".join(word)

    def encode_words(self, text, pattern):
        ids = []
        for word in pattern.findall(text):
            word = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
            ids.extend(self.encoder.get(t, self.encoder[self.unk]) for t in self.bpe(word).split(" "))
        return ids


# ---------------------------------------------------------------------------------------------
# T2V_TOKENIZER_OPENCLIP: simple_tokenizer.encode with ftfy.fix_text = identity

def openclip_ids(bpe, patterns, text):
    clip, spaces, _ = patterns
    text = html.unescape(html.unescape(text)).strip()
    text = spaces.sub(" ", text).strip().lower()
    return bpe.encode_words(text, clip)


# ---------------------------------------------------------------------------------------------
# T2V_TOKENIZER_DIFFUSERS: transformers' CLIPTokenizer without ftfy

class Trie:
    """transformers.tokenization_utils.Trie: split() cuts at the added tokens."""

    def __init__(self, words):
        self.data = {}
        for w in words:
            node = self.data
            for ch in w:
                node = node.setdefault(ch, {})
            node[""] = 1

    def split(self, text):
        states, offsets, skip = {}, [0], 0
        for current, current_char in enumerate(text):
            if skip and current < skip:
                continue
            to_remove, reset = set(), False
            for start, trie_pointer in states.items():
                if "" in trie_pointer:
                    for lookstart, looktrie_pointer in states.items():
                        if lookstart > start:
                            break
                        elif lookstart < start:
                            lookahead_index = current + 1
                            end = current + 1
                        else:
                            lookahead_index = current
                            end = current
                        next_char = text[lookahead_index] if lookahead_index < len(text) else None
                        if "" in looktrie_pointer:
                            start = lookstart
                            end = lookahead_index
                            skip = lookahead_index
                        while next_char in looktrie_pointer:
                            looktrie_pointer = looktrie_pointer[next_char]
                            lookahead_index += 1
                            if "" in looktrie_pointer:
                                start = lookstart
                                end = lookahead_index
                                skip = lookahead_index
                            if lookahead_index == len(text):
                                break
                            next_char = text[lookahead_index]
                    offsets.append(start)
                    offsets.append(end)
                    reset = True
                    break
                elif current_char in trie_pointer:
                    states[start] = trie_pointer[current_char]
                else:
                    to_remove.add(start)
            if reset:
                states = {}
            else:
                for start in to_remove:
                    del states[start]
            if current >= skip and current_char in self.data:
                states[current] = self.data[current_char]
        for start, trie_pointer in states.items():
            if "" in trie_pointer:
                offsets.append(start)
                offsets.append(len(text))
                break
        offsets.append(len(text))
        pieces, start = [], 0
        for end in offsets:
            if start > end:
                continue  # transformers logs an error and skips, as here
            if start != end:
                pieces.append(text[start:end])
            start = end
        return pieces


def _is_chinese_char(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def basic_tokenizer(text):
    """BasicTokenizer(do_lower_case=True, strip_accents=False, do_split_on_punc=False).tokenize"""
    out = []
    for ch in text:  # _clean_text
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or (ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")):
            continue
        out.append(" " if ch in " \t\n\r" or unicodedata.category(ch) == "Zs" else ch)
    text = "".join(f" {ch} " if _is_chinese_char(ord(ch)) else ch for ch in out)
    text = unicodedata.normalize("NFC", text)
    tokens = [t.lower() for t in text.strip().split()]
    return " ".join(tokens).strip().split()


def diffusers_ids(bpe, patterns, text):
    clip = patterns[0]
    added = {bpe.bos: bpe.encoder[bpe.bos], bpe.eos: bpe.encoder[bpe.eos], bpe.unk: bpe.encoder[bpe.unk],
             bpe.pad: bpe.encoder[bpe.pad]}
    ids = []
    for piece in Trie(added).split(text):
        if piece in added:
            ids.append(added[piece])
        else:
            ids.extend(bpe.encode_words(" ".join(basic_tokenizer(piece)), clip))
    return ids


def layout(bpe, body, max_len):
    """bos + body + eos cut to max_len keeping eos, padded with the pad id; and the untruncated length."""
    full = [bpe.encoder[bpe.bos]] + body + [bpe.encoder[bpe.eos]]
    out = full[:max_len]
    if len(full) > max_len and max_len > 0:
        out[-1] = bpe.encoder[bpe.eos]
    return out + [bpe.encoder[bpe.pad]] * (max_len - len(out)), len(full)


def reference(bpe, patterns, data, mode, max_len):
    text = data.decode("utf-8", errors="replace")
    body = (openclip_ids if mode == 1 else diffusers_ids)(bpe, patterns, text)
    return layout(bpe, body, max_len)


# ---------------------------------------------------------------------------------------------
# Generated prompts

FRAGMENTS = {
    "ascii": ["a photo of a cat", "Hello World", "don't", "it's", "WE'RE", "they'VE", "I'M", "you'LL", "he'D",
              "rock 'n' roll", "''s", "x", "state-of-the-art", "high_quality", "user@mail.org", "#tag", "(ok)",
              "--", "...", "~~~", "a\tb", "c\nd", "e\r\nf", "3.14159", "2024-01-31", "v2.0", "gpt-4o", "1080p",
              "***", "<b>", "<|", "|>", "<<|endoftext|>", "end<|endoftext|>", "x<|startoftext|>y"],
    "accents": ["café", "naïve", "façade", "São Paulo", "Noël", "ÉTÉ", "Ångström", "Øre", "ŁÓDŹ", "Ǆemal",
                "ǅ", "ǈ", "ﬁne", "ﬀ", "Æsir", "Œuvre", "ĳ", "ŉ"],
    "decomposed": ["e\u0301", "a\u0308\u0301", "o\u0302\u0323", "o\u0323\u0302", "u\u031b\u0301",
                   "A\u030a", "\u0301", "x\u0301\u0316\u0300", "e\u0316\u0301\u0300\u0315", "\u1e0b\u0323",
                   "q\u0307\u0323", "\u0041\u0300\u0300", "\u0b47\u0b3e", "\u0b47\u0b57", "\u09c7\u09be",
                   "\u0915\u093c", "\u0958", "\u2126", "\u212b", "\u1fb3", "\u03b1\u0345", "\u0345",
                   "\u0391\u0345\u0301", "\u1100\u1161", "\u1100\u1161\u11a8", "\u1100\u1176",
                   "\u1112\u1175\u11c2", "\uac00\u11a8", "\u1100\u0300\u1161", "\u0f71\u0f72", "\u0f73",
                   "\u0344", "\u0340\u0341", "\u0374\u037e", "\u0387", "\u1100\u1161\u11a7",
                   "\u1100\u1161\u11c3", "\u1100\u1175\u11c2\u11a8", "\u1113\u1161", "\u1100\u11a8"],
    "cjk": ["一只熊猫在山上弹吉他", "猫が寝ている", "中文", "日本語のテキスト", "漢字かな交じり", "\uf900\uf901",
            "\U00020000\U0002a6df", "\u3400\u4dbf", "\U0002f800\U0002fa1d", "ｶﾀｶﾅ", "ＦＵＬＬ ｗｉｄｔｈ", "\u3000\u3001\u3002"],
    "hangul": ["고양이가 피아노를 친다", "한국어", "\u1100\u1161\u11a8\u1102\u1162", "ᄀᄀᄀ", "\u11a8", "\u3131\u314f"],
    "emoji": ["🐱", "🚲", "🎸🎸", "👩\u200d👩\u200d👧", "👍🏽", "❤\ufe0f", "🇫🇷", "🏳\ufe0f\u200d🌈", "😀😃😄",
              "1\ufe0f\u20e3", "☕", "©®™"],
    "html": ["&amp;", "&lt;3", "&gt;", "&quot;quoted&quot;", "&#39;", "&#x27;", "&nbsp;", "&ampfoo;", "&amp",
             "&AMP;", "&notin;", "&notit;", "&not", "&#0;", "&#128;", "&#x80;", "&#x110000;", "&#xD800;", "&#65",
             "&#0065;", "&#1234567890;", "&#x1F600;", "&Aacute", "&aacute;", "&amp;amp;", "&amp;lt;", "&&",
             "&#", "&#x", "&;", "& amp;", "&#x1;", "&#11;", "&#12;", "&#13;", "&#x7f;", "&#xfdd0;", "&#xFFFE;",
             "&NotEqualTilde;", "&fjlig;", "&Eacute;t&eacute;", "&copy2024", "&a" + "b" * 40 + ";",
             "&ltx", "&LT", "&lt;&lt;", "&#1114111;", "&#1114112;", "&#x10FFFF;", "&eacute\u0301"],
    "control": ["\x01", "\x07", "\x1b[0m", "\x7f", "\x85", "\u200b", "\u200d", "\u200e", "\ufeff", "\u00ad",
                "\u2028", "\u2029", "\ufffd", "\ue000", "\U000f0000", "\u0378", "\uffff", "\u2060", "\x0b", "\x0c",
                "\u061c", "\U000e0041"],
    "spaces": [" ", "  ", "\t", "\n", "\r", "\u00a0", "\u2000", "\u2003", "\u200a", "\u3000", "\u1680",
               "\u202f", "\u205f", "\x1c", "\x1d", "\x1e", "\x1f", "\u180e"],
    "bang": ["!", "!!", "!!!", "wow!", "!a!", "?!", "!<|endoftext|>", "<|endoftext|>!"],
    "special": ["<|startoftext|>", "<|endoftext|>", "<|ENDOFTEXT|>", "<|StartOfText|>", "<|\u017ftartoftext|>",
                "<|endoftext|><|endoftext|>", "<|endoftex", "'S", "'\u017f", "'LL", "'Re", "'\u212a",
                "a'sb", "<|endoftext|>abc", "#<|endoftext|>"],
    "case": ["İstanbul", "İ", "ß", "ẞ", "ΟΔΟΣ", "ΣΑΣ", "Σ", "AΣ", "AΣ.", "AΣ'b", "A\u0301Σ", "ΑΣ\u0301Β",
             "Σ\u00ad", "ﬃ", "ǰ", "ŉ", "Ω", "\u1e9e", "K", "Å", "ΐ", "ᾼ", "ǅa", "Ⅻ", "ⓐⒶ", "𐐀", "Ꙁ", "\u0130\u0307"],
    "digits": ["0", "42", "1999", "٣", "３", "²", "Ⅻ", "½", "𝟘", "௧", "१२३", "⑫"],
    "scripts": ["Γειά σου κόσμε", "привет мир", "ПРИВЕТ", "नमस्ते", "தமிழ்", "ภาษาไทย", "עברית", "العربية",
                "ქართული", "Հայերեն", "ᏣᎳᎩ", "ꙮ", "𓀀", "ᚠᛇᚻ"],
}
def targeted_pools():
    """Character pools for the targeted generators: composition (NFC), case (lower), HTML references."""
    compose, cased = set(), []
    for c in range(0x110000):
        ch = chr(c)
        d = unicodedata.decomposition(ch)
        if d and not d.startswith("<"):
            compose.add(c)
            compose.update(int(x, 16) for x in d.split())
        if ch.lower() != ch or ch.upper() != ch or 0x300 <= c < 0x370:
            cased.append(c)
    compose.update(range(0x1100, 0x1113))  # Hangul L, V, T jamo, syllables
    compose.update(range(0x1161, 0x1177))
    compose.update(range(0x11A7, 0x11C4))
    compose.update(range(0xAC00, 0xAC40))
    compose.update(range(0x300, 0x370))
    return sorted(compose), cased


def targeted_prompt(rng, kind, pools):
    compose, cased = pools
    n = rng.randint(1, 12)
    if kind == "nfc":
        return "".join(chr(rng.choice(compose)) for _ in range(n)).encode("utf-8")
    if kind == "lower":
        extra = ["\u03a3", "'", ".", " ", "\u00ad", "\u0301", "A", "a", "1"]
        return "".join(chr(rng.choice(cased)) if rng.random() < 0.6 else rng.choice(extra)
                       for _ in range(n)).encode("utf-8")
    names = ["amp", "lt", "gt", "not", "notin", "AMP", "copy", "eacute", "Eacute", "nbsp", "fjlig", "x", "#",
             "#x", "#X", "#0", "#128", "#x80", "#65", "#x1F600", "#xD800", "#1114112", "a", "z", "\u00e9", ""]
    return "".join(rng.choice(["&", "&", ";", " ", "x", "9", "\t", "&#", "é"]) + rng.choice(names)
                   + rng.choice([";", "", "", "a", ";;"]) for _ in range(n)).encode("utf-8")


INVALID_UTF8 = [b"\xff", b"\xc0\xaf", b"\xe2\x82", b"\xed\xa0\x80", b"\xf0\x9f\x98", b"\x80\x80", b"\xf5\x80",
                b"\xf4\x90\x80\x80", b"\xe0\x80\x80", b"\xc2", b"\xf8\x88\x80\x80\x80", b"\xe2\x28\xa1"]


def random_prompt(rng):
    pools = list(FRAGMENTS)
    parts = []
    for _ in range(rng.randint(1, 14)):
        kind = rng.choice(pools)
        s = rng.choice(FRAGMENTS[kind])
        if kind == "cjk" and rng.random() < 0.3:
            s = "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(rng.randint(1, 6)))
        if kind == "hangul" and rng.random() < 0.3:
            s = "".join(chr(rng.randint(0xAC00, 0xD7A3)) for _ in range(rng.randint(1, 6)))
        if kind == "decomposed" and rng.random() < 0.4:  # random stacks of combining marks
            marks = [c for c in range(0x300, 0x370)] + [0x1DC0, 0x20D0, 0x0591, 0x05B0, 0x0E48, 0x302A, 0x0345]
            s = rng.choice("aeiouAEIOUnNcCyY\u03b1\u0391") + "".join(
                chr(rng.choice(marks)) for _ in range(rng.randint(1, 5)))
        if rng.random() < 0.2:
            s = s.upper()
        parts.append(s.encode("utf-8"))
        parts.append(rng.choice([b" ", b" ", b"", b"  ", "\u00a0".encode(), b"\t", b"!", b"\n"]))
    if rng.random() < 0.15:
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(INVALID_UTF8))
    return b"".join(parts)


# ---------------------------------------------------------------------------------------------
# Running the C

class Driver:
    def __init__(self, path, model):
        self.proc = subprocess.Popen([path, model], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def tokenize(self, data, mode, max_len):
        self.proc.stdin.write(struct.pack("<BII", mode, max_len, len(data)) + data)
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"tokenize_batch died (exit {self.proc.wait()}) on {data[:80]!r}")
        values = [int(x) for x in line.split()]
        return values[2:], values[0], values[1] / 1e6

    def close(self):
        self.proc.stdin.close()
        return self.proc.wait()


def cli_ids(t2v, model, text, mode):
    args = [t2v, "tokenize", model, text] + (["--tokenizer", "openclip"] if mode == 1 else [])
    out = subprocess.run(args, capture_output=True, check=True)
    return [int(x) for x in out.stdout.split()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("tokenizer_dir")
    ap.add_argument("--tokens", help="tokens.json (default: next to the tokenizer's model folder)")
    ap.add_argument("--t2v", required=True)
    ap.add_argument("--driver", required=True)
    ap.add_argument("-n", type=int, default=400, help="generated prompts (each in both modes)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    tokens = args.tokens or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.tokenizer_dir))),
                                         "tokens.json")
    bpe = ClipBPE(args.tokenizer_dir)
    patterns = compile_patterns()
    print(f"reference regex: {patterns[2]}")
    failures = 0

    # 1. golden ids through the CLI
    with open(tokens, encoding="utf-8") as f:
        golden = json.load(f)
    n_ok = [0, 0]
    for p in golden["prompts"]:
        for mode in (0, 1):
            want = p.get("hf_slow_noftfy_ids_emulated", p["ids"]) if mode == 0 else p["ids"]
            got = cli_ids(args.t2v, args.model, p["text"], mode)
            ref, ref_len = reference(bpe, patterns, p["text"].encode("utf-8"), mode, golden["context_length"])
            if got == want:
                n_ok[mode] += 1
            else:
                failures += 1
                print(f"GOLDEN MISMATCH ({'openclip' if mode else 'diffusers'}) {p['text']!r}\n  want {want}\n"
                      f"  got  {got}")
            if ref != want or (mode == 1 and ref_len != p["untruncated_length"]):
                failures += 1
                print(f"REFERENCE DISAGREES WITH GOLDEN ({'openclip' if mode else 'diffusers'}) {p['text']!r}")
    n = len(golden["prompts"])
    print(f"golden: diffusers {n_ok[0]}/{n}, openclip {n_ok[1]}/{n}")

    # 2. generated prompts through the driver, all ids
    driver = Driver(args.driver, args.model)
    rng = random.Random(args.seed)
    prompts = [random_prompt(rng) for _ in range(args.n)]
    prompts += [s.encode("utf-8") for kind in FRAGMENTS.values() for s in kind]
    n_ok = [0, 0]
    for data in prompts:
        for mode in (0, 1):
            ref, ref_len = reference(bpe, patterns, data, mode, 4096)
            got, got_len, _ = driver.tokenize(data, mode, 4096)
            short, short_len, _ = driver.tokenize(data, mode, 77)
            ok = got == ref and got_len == ref_len and (short, short_len) == layout(bpe, ref[1:ref_len - 1], 77)
            if ok:
                n_ok[mode] += 1
            else:
                failures += 1
                k = next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b), None)
                print(f"REFERENCE MISMATCH ({'openclip' if mode else 'diffusers'}) {data!r}\n"
                      f"  length {got_len} vs {ref_len}, first difference at {k}\n"
                      f"  python {ref[:ref_len][:40]}\n  c      {got[:got_len][:40]}")
    print(f"reference: diffusers {n_ok[0]}/{len(prompts)}, openclip {n_ok[1]}/{len(prompts)} generated prompts")

    def agrees(data, mode, max_len, label):
        """the driver gives the reference's ids and untruncated length; prints the prompt where it does not"""
        ref, ref_len = reference(bpe, patterns, data, mode, max_len)
        got, got_len, _ = driver.tokenize(data, mode, max_len)
        if (got, got_len) == (ref, ref_len):
            return True
        print(f"{label} MISMATCH ({'openclip' if mode else 'diffusers'}, max_len {max_len}) {data[:60]!r}\n"
              f"  python {ref[:40]} length {ref_len}\n  c      {got[:40]} length {got_len}")
        return False

    # targeted: NFC (diffusers mode), lower() with final sigma, HTML references (openclip mode)
    pools = targeted_pools()
    for kind, modes in (("nfc", (0,)), ("lower", (0, 1)), ("html", (1,))):
        ok = []
        for _ in range(args.n * 2):
            data = targeted_prompt(rng, kind, pools)
            ok += [agrees(data, mode, 4096, f"TARGETED {kind}") for mode in modes]
        failures += ok.count(False)
        print(f"targeted {kind}: {sum(ok)}/{len(ok)} match")

    # 3. robustness: max_len edge cases, invalid UTF-8, empty, whitespace, 100 KB
    ok = [agrees(data, mode, max_len, "MAX_LEN") for max_len in (1, 2, 3, 5)
          for data in (b"", b"a photo of a cat", b"wow!!!") for mode in (0, 1)]
    failures += ok.count(False)
    brng = random.Random(args.seed + 1)
    special = [b"", b" ", b"\t\n \r", "\u3000\u00a0\u2028".encode(), b"\x1c\x1d", b"\xff" * 10, b"\xed\xa0\x80",
               bytes(brng.randrange(1, 256) for _ in range(2000)),
               bytes(brng.choice([0x41, 0x80, 0xbf, 0xc2, 0xe0, 0xed, 0xf0, 0xf4, 0xff, 0x20, 0x21])
                     for _ in range(2000))]
    special += [bytes(brng.randrange(1, 256) for _ in range(brng.randint(1, 40))) for _ in range(300)]
    ok = [agrees(data, mode, 4096, "BYTES") for data in special for mode in (0, 1)]
    failures += ok.count(False)
    print(f"bytes / empty / whitespace: {sum(ok)}/{len(ok)} match")

    big_text = b" ".join(random_prompt(brng) for _ in range(2000))[:100_000]
    big = {
        "100 KB of generated prompts": (big_text, True),
        "100 KB of 'a'": (b"a" * 100_000, True),
        "100 KB of '!'": (b"!" * 100_000, True),
        "100 KB of spaces": (b" " * 100_000, True),
        "100 KB of '&amp;'": (b"&amp;" * 20_000, True),
        "100 KB of random letters (one word)": (bytes(brng.choice(b"abcdefghijklmnopqrstuvwxyz")
                                                      for _ in range(100_000)), False),
        "100 KB of combining marks": (b"a" + "\u0301\u0316".encode() * 25_000, False),
        "100 KB of random bytes": (bytes(brng.randrange(1, 256) for _ in range(100_000)), False),
        "3 KB of random letters (one word)": (bytes(brng.choice(b"abcdefghijklmnopqrstuvwxyz")
                                                    for _ in range(3000)), True),
        "4 KB of combining marks": (b"a" + "\u0301\u0316\u0300\u0345".encode() * 500, True),
        "3 KB of random bytes": (bytes(brng.randrange(1, 256) for _ in range(3000)), True),
        "100 KB of CJK": ("".join(chr(brng.randint(0x4E00, 0x9FFF)) for _ in range(33_000)).encode(), True),
        "100 KB of emoji + ZWJ": (("👩\u200d👩\u200d👧 " * 5000).encode(), True),
    }
    for name, (data, compare) in big.items():
        for mode in (0, 1):
            got, got_len, seconds = driver.tokenize(data, mode, 1 << 17)
            line = f"{name:40s} {'openclip' if mode else 'diffusers':9s} {got_len:7d} tokens {seconds:.3f} s"
            if seconds >= 1.0:
                failures += 1
                line += "  TOO SLOW"
            if compare:
                ref, ref_len = reference(bpe, patterns, data, mode, 1 << 17)
                if (got, got_len) != (ref, ref_len):
                    failures += 1
                    line += "  MISMATCH"
                else:
                    line += "  = python"
            print(line)
    rc = driver.close()
    if rc:
        failures += 1
        print(f"tokenize_batch exited with {rc}")
    print("OK" if not failures else f"{failures} FAILURES")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
