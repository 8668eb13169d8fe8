"""Grounding throughput: batched against one sample at a time, and image tokens per sample.

1. Samples per second of the grounding path (`policies.grounding` profile -> prompts ->
   `QwenVLGenerator.generate` -> `read_grounding_answer`) with the tiny Qwen3-VL on CPU
   (or `--model`), for one left-padded generate call per `--batch` samples against one
   call per sample, measured side by side in one run. Greedy decoding and a fixed number
   of new tokens (the end-of-turn token is suppressed until then), so both modes do the
   same work.
2. Vision tokens one sample costs under each grounding profile at the default budget:
   the harness's own resize (policies.grounding) followed by the released checkpoints'
   processor bounds (Qwen3-VL 65536..16777216 px, factor 32; Qwen2.5-VL 3136..12845056 px,
   factor 28), for the generated set's 1280x720 pages and typical benchmark screens.

Usage: `python -m benchmarks.perf.grounding [--samples 16] [--batch 8] [--new-tokens 16]
[--data DIR] [--model DIR] [--threads N]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table

from actions.observation import Size
from policies.grounding import GROUNDING_PROFILES, read_grounding_answer
from policies.prompting import ImageBudget, SamplingParams

PROCESSOR_BUDGETS = {
    "qwen3vl": ImageBudget(factor=32, min_pixels=65_536, max_pixels=16_777_216),
    "qwen2_5vl": ImageBudget(factor=28, min_pixels=3_136, max_pixels=12_845_056),
}
SCREENS = {
    "generated web page": Size(width=1280, height=720),
    "ScreenSpot mobile (iPhone)": Size(width=1170, height=2532),
    "1920x1080 desktop": Size(width=1920, height=1080),
    "ScreenSpot-Pro 2560x1440": Size(width=2560, height=1440),
    "ScreenSpot-Pro 3840x2160": Size(width=3840, height=2160),
    "ScreenSpot-Pro 5120x2880": Size(width=5120, height=2880),
}


def image_tokens_table() -> Table:
    table = Table(title="Vision tokens per grounding sample (default budget)")
    for column in ("profile", "screen", "harness resize", "model sees", "vision tokens"):
        table.add_column(column)
    for name, profile in GROUNDING_PROFILES.items():
        budget = PROCESSOR_BUDGETS[name]
        for label, size in SCREENS.items():
            resized = profile.resized_size(size)
            seen = budget.image_size(resized)
            table.add_row(name, f"{label} {size.width}x{size.height}",
                          f"{resized.width}x{resized.height}", f"{seen.width}x{seen.height}",
                          str(budget.image_tokens(resized)))
    return table


def _samples(data: Path | None, count: int) -> list[tuple[Image.Image, str]]:
    if data is not None:
        from benchmarks.grounding.data import load_screenspot_pro

        samples, _ = load_screenspot_pro(data)
        return [(Image.open(s.image_path).convert("RGB"), s.instruction)
                for s in samples[:count]]
    out = []
    for index in range(count):
        image = Image.new("RGB", (1280, 720), "white")
        x = 40 + (index * 97) % 1000
        ImageDraw.Draw(image).rectangle([x, 100, x + 120, 140], fill=(90, 90, 200))
        out.append((image, f'the "Button {index}" button'))
    return out


def measure(generator, prompts, batch: int, new_tokens: int) -> float:
    """Seconds to generate for all prompts, `batch` per generate call."""
    sampling = SamplingParams.greedy_decoding()
    started = time.perf_counter()
    for start in range(0, len(prompts), batch):
        chunk = prompts[start:start + batch]
        generations = generator.generate([(p.messages, p.pil_images()) for p in chunk],
                                         sampling, new_tokens, min_new_tokens=new_tokens)
        for prompt, generation in zip(chunk, generations, strict=True):
            read_grounding_answer(generation.text, prompt.converter)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--data", type=Path, default=None,
                        help="a ScreenSpot-Pro-format folder (e.g. from cua generate-grounding)")
    parser.add_argument("--model", default=None, help="checkpoint (default: a tiny Qwen3-VL)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    console = Console()
    console.print(image_tokens_table())

    import torch

    from policies.qwen3vl import QwenVLGenerator

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from policies.tiny import build_tiny_qwen3vl

            model = str(build_tiny_qwen3vl(Path(tmp) / "tiny"))
        generator = QwenVLGenerator(model, device="cpu" if not torch.cuda.is_available()
                                    else "auto")
        profile = GROUNDING_PROFILES["qwen3vl"]
        prompts = [profile.build(image, text) for image, text in _samples(args.data, args.samples)]
        measure(generator, prompts[:1], 1, 2)  # warm up
        one_s = measure(generator, prompts, 1, args.new_tokens)
        batched_s = measure(generator, prompts, args.batch, args.new_tokens)
    table = Table(title=f"Grounding throughput ({len(prompts)} samples, {args.new_tokens} new "
                  "tokens each, greedy)")
    for column in ("mode", "wall s", "samples/s"):
        table.add_column(column)
    table.add_row("one sample per call", f"{one_s:.2f}", f"{len(prompts) / one_s:.2f}")
    table.add_row(f"batched ({args.batch} per call)", f"{batched_s:.2f}",
                  f"{len(prompts) / batched_s:.2f}")
    console.print(table)
    console.print(f"batched / one at a time: {one_s / batched_s:.2f}x samples/s")


if __name__ == "__main__":
    main()
