"""Policy performance: batched act() vs sequential calls, and image tokens per step.

1. Throughput of `Qwen3VLPolicy.act` itself (prompt building, image processing, one
   left-padded generate call, parsing) on N episodes at once against N sequential
   single-episode calls, with the tiny Qwen3-VL on CPU (or `--model` for a real
   checkpoint). The N prompts differ in length (0-3 earlier steps, 1-4 sentence
   instructions), so the batch is padded. Beside it, the generator's call alone on the
   same prompts built beforehand (encoding + decoding), and how long building and
   encoding (image processing, tokenizing) the prompts take by themselves. Greedy decoding, a fixed number of new tokens (the
   end-of-turn token is suppressed so every episode generates the same count).
2. Vision tokens one screenshot costs at the default pixel budget of the released
   Qwen3-VL checkpoints (preprocessor_config.json: patch 16, merge 2, shortest_edge
   65536, longest_edge 16777216) and of Qwen2.5-VL (patch 14, merge 2, 3136..12845056),
   computed by transformers' own image processor and cross-checked with
   `policies.prompting.ImageBudget`.

Usage: `python -m benchmarks.perf.policy [--episodes 8] [--new-tokens 32] [--threads N]`.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table

from actions.contracts import EpisodeState, Task
from actions.observation import Observation, Size
from policies.prompting import ImageBudget

SCREEN_SIZES = (Size(width=1280, height=720), Size(width=1080, height=2400))
BUDGETS = {
    "Qwen3-VL": (16, ImageBudget(factor=32, min_pixels=65_536, max_pixels=16_777_216)),
    "Qwen2.5-VL": (14, ImageBudget(factor=28, min_pixels=3_136, max_pixels=12_845_056)),
}


def _png(index: int, size: Size) -> bytes:
    image = Image.new("RGB", (size.width, size.height), "white")
    x = 40 + (index * 97) % (size.width - 200)
    ImageDraw.Draw(image).rectangle([x, 100, x + 160, 150], fill=(90, 90, 200))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _state(index: int, size: Size) -> EpisodeState:
    """Episode `index` at step `index % 4`: 0-3 earlier steps (replayed with their
    screenshots up to the profile's limit) and an instruction of 1-4 sentences, so the
    prompts in one batch differ in length and the batch is padded."""
    from actions.contracts import PolicyOutput, StepHistory

    def observation(step: int) -> Observation:
        return Observation(screenshot_png=_png(index * 10 + step, size), screen_size=size,
                           screenshot_size=size)

    history = [StepHistory(index=step, observation=observation(step), output=PolicyOutput(
        raw_text=f"I click button {step}.\n<tool_call>\n{{\"name\": \"computer_use\", "
                 f"\"arguments\": {{\"action\": \"left_click\", \"coordinate\": "
                 f"[{100 + step}, 200]}}}}\n</tool_call>"))
        for step in range(index % 4)]
    instruction = " ".join(["Click the blue button, then check that it changed colour."]
                           * (1 + index % 4))
    task = Task(suite="bench", task_id="click", seed=index, instruction=instruction)
    return EpisodeState(episode_id=f"bench-{index}", task=task, instruction=instruction,
                        observation=observation(len(history)), history=history)


def image_tokens_table() -> Table:
    """Vision tokens per screenshot at the released default budgets."""
    import warnings

    from transformers import Qwen2VLImageProcessorPil

    table = Table(title="Image tokens per screenshot (default pixel budget)")
    for column in ("model", "screenshot", "resized to", "vision tokens", "ImageBudget agrees"):
        table.add_column(column)
    for name, (patch, budget) in BUDGETS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            processor = Qwen2VLImageProcessorPil(
                size={"shortest_edge": budget.min_pixels, "longest_edge": budget.max_pixels},
                patch_size=patch, merge_size=2, temporal_patch_size=2)
        for size in SCREEN_SIZES:
            grid = processor(images=[Image.new("RGB", (size.width, size.height))],
                             return_tensors="pt")["image_grid_thw"][0].tolist()
            tokens = grid[0] * grid[1] * grid[2] // 4
            resized = budget.image_size(size)
            table.add_row(name, str(size), str(resized), str(tokens),
                          str(tokens == budget.image_tokens(size)))
    return table


def throughput(model: str, episodes: int, new_tokens: int, screen: Size,
               repeats: int = 3) -> dict[str, float]:
    """Seconds for one batched `act()` on `episodes` states of different prompt lengths vs
    as many single-state `act()` calls (prompt building, image processing, generation and
    parsing: the policy's whole path), and the same for the generate call alone on
    prompts built beforehand. Best of `repeats` runs of each (what the machine does when
    not disturbed). The end-of-turn token is held back until `new_tokens` exist (the
    generator's `min_new_tokens`), so that every way does the same decoding work."""
    import functools

    from policies.prompting import SamplingParams
    from policies.qwen3vl import Qwen3VLPolicy

    policy = Qwen3VLPolicy.from_options(model=model, greedy=True, max_new_tokens=new_tokens)
    policy.generator.generate = functools.partial(policy.generator.generate,
                                                  min_new_tokens=new_tokens)
    states = [_state(i, screen) for i in range(episodes)]
    prompts = policy.prompts(states)
    greedy = SamplingParams.greedy_decoding()

    def act(batch: list[EpisodeState]) -> list[int]:
        return [output.completion_tokens or 0 for output in policy.act(batch)]

    def generate(batch: list) -> list[int]:
        generations = policy.generator.generate(
            [(p.messages, p.pil_images()) for p in batch], greedy, new_tokens)
        return [len(g.response_token_ids) for g in generations]

    def encode() -> list[int]:
        return [len(policy.encoder.encode(p.messages, p.pil_images())["input_ids"])
                for p in prompts]

    act(states)  # warm-up (lazy init, the padded batch's allocations)
    best = dict.fromkeys(("act_batched", "act_sequential", "generate_batched",
                          "generate_sequential", "build", "encode"), float("inf"))
    for _ in range(repeats):
        for name, run in (
                ("act_batched", lambda: act(states)),
                ("act_sequential", lambda: [n for s in states for n in act([s])]),
                ("generate_batched", lambda: generate(prompts)),
                ("generate_sequential", lambda: [n for p in prompts for n in generate([p])]),
                ("build", lambda: policy.prompts(states)),
                ("encode", encode)):
            started = time.monotonic()
            tokens = run()
            best[name] = min(best[name], time.monotonic() - started)
            if name.startswith(("act", "generate")):
                assert sum(tokens) == episodes * new_tokens, (name, tokens)
    lengths = encode()
    return {"episodes": episodes, "new_tokens": new_tokens,
            "prompt_tokens_min": float(min(lengths)), "prompt_tokens_max": float(max(lengths)),
            **best}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint (default: build the tiny one)")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = parser.parse_args(argv)
    console = Console(width=130)
    console.print(image_tokens_table())
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        model = args.model
        if model is None:
            from policies.tiny import build_tiny_qwen3vl

            model = str(build_tiny_qwen3vl(Path(scratch) / "tiny"))
        result = throughput(model, args.episodes, args.new_tokens, Size(width=1280, height=720),
                            args.repeats)
    table = Table(title=f"throughput, {'tiny Qwen3-VL' if args.model is None else model} "
                  f"on {'CUDA' if torch.cuda.is_available() else 'CPU'} "
                  f"({torch.get_num_threads()} threads), {result['episodes']} episodes, "
                  f"prompts of {result['prompt_tokens_min']:.0f}-"
                  f"{result['prompt_tokens_max']:.0f} tokens, "
                  f"{result['new_tokens']} new tokens each")
    for column in ("what is timed", "batched s", "sequential s", "speedup", "batched tok/s",
                   "sequential tok/s"):
        table.add_column(column)
    tokens = result["episodes"] * result["new_tokens"]
    for label, key in (("act(): prompts, images, generate, parse", "act"),
                       ("generate(): encode + decode, prompts built beforehand",
                        "generate")):
        batched, sequential = result[f"{key}_batched"], result[f"{key}_sequential"]
        table.add_row(label, f"{batched:.2f}", f"{sequential:.2f}",
                      f"{sequential / batched:.2f}x", f"{tokens / batched:.1f}",
                      f"{tokens / sequential:.1f}")
    console.print(table)
    act_s = result["act_batched"]
    console.print(
        f"of a batched act() ({act_s:.2f} s): building the prompts {result['build']:.2f} s "
        f"({result['build'] / act_s:.0%}), encoding them (image processing, tokenizing; the "
        f"same work batched or not) {result['encode']:.2f} s "
        f"({result['encode'] / act_s:.0%}); the rest is decoding and parsing")


if __name__ == "__main__":
    main()
