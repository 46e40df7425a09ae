"""Edit a checkpoint's style list: append, remove or rename a style.

A style is one row of γ/β in every conditional instance norm plus one entry in the model
card, and nothing else: these edits touch only those, so every convolution and every other
style's row stays bit-identical. The card keeps a short history in ``training["style_edits"]``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch

from stylebox.model.card import CardError, ModelCard, StyleInfo
from stylebox.model.checkpoint import build_generator
from stylebox.model.network import ConditionalInstanceNorm, Generator


def cin_layers(generator: Generator) -> Iterator[tuple[str, ConditionalInstanceNorm]]:
    for name, module in generator.named_modules():
        if isinstance(module, ConditionalInstanceNorm):
            yield name, module


def is_style_table(param_name: str) -> bool:
    """True for the (N, C) γ/β tables; False for every convolution weight and bias."""
    return param_name.endswith((".gamma", ".beta"))


def log_edit(card: ModelCard, **entry: object) -> None:
    card.training["style_edits"] = [*card.training.get("style_edits", []), entry]


def style_origins(card: ModelCard) -> dict[str, tuple[str, str]]:
    """Each style of `card` -> (the name it was trained under, the painting's file name that
    `add-style` recorded, or ""), by replaying `training["style_edits"]` (adds, renames,
    removes) in order. Jointly trained styles that were never renamed map to (name, "")."""
    origin: dict[str, tuple[str, str]] = {}
    for edit in card.training.get("style_edits", []):
        if not isinstance(edit, dict) or not isinstance(edit.get("name"), str):
            continue  # a card written by hand: its history helps, it does not have to parse
        op, name = edit.get("op"), edit["name"]
        if op == "add":
            origin[name] = (name, str(edit.get("image") or ""))
        elif op == "rename" and isinstance(edit.get("new_name"), str):
            origin[edit["new_name"]] = origin.pop(name, (name, ""))
        elif op == "remove":
            origin.pop(name, None)
    return {s.name: origin.get(s.name, (s.name, "")) for s in card.styles}


def _rebuilt(generator: Generator, card: ModelCard, rows: list[int | None]) -> Generator:
    """A generator for `card` whose row k is old row rows[k] (None: left at its init)."""
    new = build_generator(card)
    old_state = generator.state_dict()
    state = new.state_dict()
    with torch.no_grad():
        for key, value in old_state.items():
            if not is_style_table(key):
                state[key] = value.clone()
                continue
            table = state[key].clone()  # (N', C)
            for k, src in enumerate(rows):
                if src is not None:
                    table[k] = value[src]
            state[key] = table
    new.load_state_dict(state)
    return new


def append_style(generator: Generator, card: ModelCard, style: StyleInfo,
                 init_from: int | None = None) -> tuple[Generator, ModelCard]:
    """Add `style` as row N, initialised from row `init_from` or (None) the mean of all rows."""
    if style.name in card.style_names:
        raise CardError(f"the model already has a style named {style.name!r}")
    new_card = copy.deepcopy(card)
    new_card.styles = [*card.styles, style]
    new_card.export = {}  # the old export facts describe another graph
    n = card.n_styles
    new = _rebuilt(generator, new_card, [*range(n), init_from])
    if init_from is None:
        with torch.no_grad():
            for _, layer in cin_layers(new):
                layer.gamma[n] = layer.gamma[:n].mean(0)
                layer.beta[n] = layer.beta[:n].mean(0)
    return new, new_card


def remove_style(generator: Generator, card: ModelCard,
                 name: str) -> tuple[Generator, ModelCard]:
    idx = _index(card, name)
    if card.n_styles == 1:
        raise CardError(f"{name!r} is the model's only style; a model needs at least one")
    new_card = copy.deepcopy(card)
    new_card.styles = [s for s in card.styles if s.name != name]
    new_card.export = {}
    log_edit(new_card, op="remove", name=name)
    rows = [i for i in range(card.n_styles) if i != idx]
    return _rebuilt(generator, new_card, rows), new_card


def rename_style(card: ModelCard, name: str, new_name: str | None = None,
                 title: str | None = None, source: str | None = None) -> ModelCard:
    """Change a style's name, title or source; the γ/β tables do not change at all."""
    idx = _index(card, name)
    new_name = new_name or name
    if new_name != name and new_name in card.style_names:
        raise CardError(f"the model already has a style named {new_name!r}")
    old = card.styles[idx]
    # A renamed style whose old title was derived from its name gets a derived title again.
    keep_title = old.title if old.title != name.replace("_", " ").title() else ""
    style = StyleInfo(new_name, title if title is not None else keep_title,
                      source if source is not None else old.source)
    new_card = copy.deepcopy(card)
    new_card.styles[idx] = style
    log_edit(new_card, op="rename", name=name, new_name=new_name, title=style.title)
    return new_card


def _index(card: ModelCard, name: str) -> int:
    try:
        return card.index(name)
    except KeyError:
        raise CardError(f"no style named {name!r}; the model has "
                        f"{', '.join(card.style_names)}") from None


# -- checkpoint files and the `stylebox remove-style` / `rename-style` commands ---------------

def edited_config(config: dict | None, op: str, name: str, /, **values: str) -> dict | None:
    """The checkpoint's training config with its `styles` list edited like the card."""
    if not config:
        return config
    config = copy.deepcopy(config)
    styles = config.get("styles", [])
    if op == "remove":
        styles = [s for s in styles if s.get("name") != name]
    elif op == "rename":
        for s in styles:
            if s.get("name") == name:
                s.update({k: v for k, v in values.items() if v is not None})
    elif op == "append":
        styles = [*styles, {"name": name, **values}]
    config["styles"] = styles
    return config


def _edit_main(argv: list[str] | None, op: str) -> int:
    import argparse

    from stylebox.model.checkpoint import load_checkpoint, save_checkpoint

    prog = f"stylebox {op}-style"
    what = {"remove": "Remove a style (its card entry and γ/β rows) from a checkpoint.",
            "rename": "Rename or retitle a style in a checkpoint (the card only)."}[op]
    p = argparse.ArgumentParser(prog=prog, description=what)
    p.add_argument("checkpoint", help="a checkpoint from `stylebox train` or `add-style`")
    p.add_argument("--name", required=True, help="the style to edit")
    if op == "rename":
        p.add_argument("--new-name", help="new URL-safe name (the ?style= value)")
        p.add_argument("--title", help="new human title")
        p.add_argument("--source", help="new source note")
    p.add_argument("-o", "--out", required=True, help="the checkpoint to write")
    args = p.parse_args(argv)
    if op == "rename" and args.new_name is None and args.title is None and args.source is None:
        p.error("give at least one of --new-name, --title, --source")
    # CheckpointError, CardError: one line from the `stylebox` entry point.
    generator, card, state = load_checkpoint(args.checkpoint)
    if op == "remove":
        generator, card = remove_style(generator, card, args.name)
        config = edited_config(state.get("config"), "remove", args.name)
    else:
        card = rename_style(card, args.name, args.new_name, args.title, args.source)
        new = card.styles[card.index(args.new_name or args.name)]
        config = edited_config(state.get("config"), "rename", args.name,
                               name=new.name, title=new.title, source=new.source)
    extra = {"config": config} if config else {}
    save_checkpoint(args.out, generator, card, **extra)
    print(f"{prog}: wrote {args.out} ({card.n_styles} styles: {', '.join(card.style_names)}); "
          f"`stylebox export {args.out} -o MODEL.onnx` makes the servable file")
    return 0


def remove_main(argv: list[str] | None = None) -> int:
    return _edit_main(argv, "remove")


def rename_main(argv: list[str] | None = None) -> int:
    return _edit_main(argv, "rename")
