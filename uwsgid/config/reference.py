"""The option declarations rendered for people: `--help` text and a Markdown reference.
Both come from the same Option objects the parser uses, so they cannot drift apart."""

from __future__ import annotations

from uwsgid.config.options import Option, all_options

_KIND_METAVAR = {"flag": "", "str": "VALUE", "int": "N", "float": "NUM", "size": "SIZE", "optional": "[VALUE]"}
_KIND_DOC = {"flag": "flag", "str": "string", "int": "integer", "float": "number",
             "size": "size (64k, 1m, 1g)", "optional": "optional value"}


def metavar(opt: Option) -> str:
    return opt.metavar or _KIND_METAVAR[opt.kind]


def groups() -> dict[str, list[Option]]:
    """Options by group, "core" first, then groups in the order they were declared."""
    out: dict[str, list[Option]] = {"core": []}
    for opt in all_options():
        out.setdefault(opt.group or "core", []).append(opt)
    return {g: opts for g, opts in out.items() if opts}


def help_text(prog: str = "uwsgi") -> str:
    """One line per option name, like `uwsgi --help` (aliases get their own line, so that
    grepping the help for any accepted name finds it), under a header per group."""
    lines = [f"Usage: {prog} [options...] [config files...]", ""]
    for group, opts in groups().items():
        lines.append(f"{group} options:")
        for opt in opts:
            for name in (opt.name, *opt.aliases):
                flag = f"-{opt.short}|--{name}" if opt.short else f"--{name}"
                meta = metavar(opt)
                left = f"{flag} {meta}" if meta else flag
                lines.append(f"    {left:<40} {opt.help}".rstrip())
        lines.append("")
    return "\n".join(lines)


def markdown() -> str:
    """A Markdown table per group: name, short form, aliases, kind, default, help."""
    out = ["# Options", "",
           "Every option works on the command line (`--name value`, `--name=value`), in ini/json/yaml",
           "config files (`name = value`) and as an environment variable (`UWSGI_NAME`).", ""]
    for group, opts in groups().items():
        out += [f"## {group}", "", "| option | short | kind | default | description |",
                "|---|---|---|---|---|"]
        for opt in opts:
            names = " ".join(f"`--{n}`" for n in (opt.name, *opt.aliases))
            if opt.multi:
                names += " (repeatable)"
            default = "" if opt.default in (None, [], False) else f"`{opt.default}`"
            short = f"`-{opt.short}`" if opt.short else ""
            text = opt.help.replace("|", "\\|")
            out.append(f"| {names} | {short} | {_KIND_DOC[opt.kind]} | {default} | {text} |")
        out.append("")
    return "\n".join(out)

