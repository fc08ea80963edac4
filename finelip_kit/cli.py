"""``finelip`` command line. Subcommands arrive with their issues; today: ``export``.

    finelip export --from <dir|.pt|.safetensors> --to <dir> [--what text|clip|finelip]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def load_any(source: str):
    """A FineLIP model from a kit checkpoint dir, a transformers CLIP dir / hub id, or an OpenAI-format file."""
    from .model import FineLIP
    from .pretrained import CONFIG_FILE, WEIGHTS_FILE

    path = Path(source)
    if path.is_dir() and (path / WEIGHTS_FILE).is_file() and '"finelip_kit_version"' in (path / CONFIG_FILE).read_text():
        return FineLIP.from_pretrained(path)
    if path.is_file():
        return FineLIP.from_openai_checkpoint(path)
    return FineLIP.from_clip(source)


def export(args: argparse.Namespace) -> int:
    from .pretrained import export_clip, export_text_encoder, save_pretrained

    model = load_any(args.source)
    writer = {"text": export_text_encoder, "clip": export_clip, "finelip": save_pretrained}[args.what]
    writer(model, args.to)
    print(f"wrote {args.what} export of {args.source} to {args.to} (context length {model.context_length})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finelip", description="finelip-kit command line")
    commands = parser.add_subparsers(dest="command", required=True)
    exporter = commands.add_parser(
        "export",
        help="convert weights: to a transformers text encoder, a transformers CLIPModel, or a finelip-kit checkpoint",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    exporter.add_argument("--from", dest="source", required=True,
                          help="finelip-kit checkpoint dir, transformers CLIP dir or hub id, or OpenAI/Long-CLIP .pt")
    exporter.add_argument("--to", required=True, help="output directory")
    exporter.add_argument("--what", choices=("text", "clip", "finelip"), default="text",
                          help="text: CLIPTextModelWithProjection + tokenizer (for diffusers); clip: CLIPModel; "
                               "finelip: the kit's own checkpoint")
    exporter.set_defaults(run=export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
