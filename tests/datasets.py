"""Where the shared evaluation datasets are: ``../shared/datasets`` beside the repository (CI and
the main checkout), or beside a worktree's parent directory; ``SIDECAR_DATASETS`` overrides.
They are public data kept outside the repository (see their README), so a bare clone lacks them
and the tests that need them skip with the path they looked at."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_datasets(*parts: str) -> Path:
    """The first existing ``shared/datasets/<parts>`` above the repository (else the usual place)."""
    env = os.environ.get("SIDECAR_DATASETS")
    if env:
        return Path(env, *parts)
    candidates = [p / "shared" / "datasets" / Path(*parts) for p in REPO.parents[:3]]
    return next((c for c in candidates if c.exists()), candidates[0])


def dataset_or_skip(*parts: str) -> Path:
    """The shared dataset at ``parts``, or a skip that says where it was looked for and why that
    is not an error. ``SIDECAR_REQUIRE_DATASETS=1`` (a checkout that must have them) fails instead,
    so a moved dataset cannot turn an equivalence test into a silent skip there."""
    import pytest

    path = shared_datasets(*parts)
    if path.exists():
        return path
    message = f"shared dataset not present at {path} (public data kept beside the repository, not in a clone)"
    if os.environ.get("SIDECAR_REQUIRE_DATASETS") == "1":
        pytest.fail(message)
    pytest.skip(reason=message)


#: Every moderation dataset file of the shared datasets (``shared/datasets/moderation``), for the
#: detectors' output-digest corpora.
MODERATION_FILES: tuple[str, ...] = (
    "advbench_harmful_behaviors.jsonl",
    "ailuminate_demo_prompts.jsonl.gz",
    "benign_clinc_oos_queries.jsonl.gz",
    "benign_self_instruct.jsonl",
    "coconot.jsonl",
    "davidson_labeled_data.csv",
    "donotanswer.jsonl",
    "gptfuzz_questions.jsonl",
    "harmbench_behaviors.jsonl",
    "hh_rlhf_harmless_base_test_openings.jsonl",
    "multijail.jsonl.gz",
    "openai_moderation_samples_1680.jsonl.gz",
    "red_instruct_harmful_questions.jsonl.gz",
    "simplesafetytests.jsonl",
)
