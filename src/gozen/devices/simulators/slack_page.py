"""The Slack stand-in's page (`/sim/slack`): what was received, like a channel, newest last: times in UTC
and the site's time, mrkdwn formatted, `:emoji:` codes drawn as on gozen's pages, images inline."""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any

from gozen.web.emoji import EMOJI  # the pages' table: the stand-in draws the codes as they do
from gozen.web.times import when_text

if TYPE_CHECKING:
    from gozen.devices.simulators.slack import SlackStandIn

PAGE_MESSAGES = 300  # the page shows this many, newest last
SNIPPET_SHOW_BYTES = 20_000  # a text file is shown up to this much on the page
ESCAPED = ((r"&lt;", "<"), (r"&gt;", ">"), (r"&amp;", "&"))  # Slack's three escapes; &amp; last


# -- mrkdwn to HTML ----------------------------------------------------------

SPECIAL = re.compile(r"<([^<>|\n]+)(?:\|([^<>\n]*))?>")
CODE_BLOCK = re.compile(r"```\n?(.*?)```", re.S)
CODE = re.compile(r"`([^`\n]+)`")
BOLD = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
ITALIC = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")
STRIKE = re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])")
EMOJI_CODE = re.compile(r":([a-z0-9_+-]+):")


def unescape_slack(text: str) -> str:
    for code, char in ESCAPED:
        text = text.replace(code, char)
    return text


def emojify(escaped_html: str) -> str:
    """`:warning:` as ⚠️; a code Slack would not know stays as written."""
    return EMOJI_CODE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), escaped_html)


def special_html(target: str, label: str | None) -> str:
    """`<url|label>`, `<!channel>`, `<@U123>`, `<#C123|name>` as Slack shows them."""
    target = unescape_slack(target)
    if target.startswith("!"):
        return f'<span class="mention">@{html.escape(target[1:].split("^")[0])}</span>'
    if target.startswith("@"):
        return f'<span class="mention">@{html.escape(label or target[1:])}</span>'
    if target.startswith("#"):
        return f'<span class="mention">#{html.escape(label or target[1:])}</span>'
    text = html.escape(unescape_slack(label)) if label else html.escape(target)
    if re.match(r"(?i)(https?|mailto):", target):
        return f'<a href="{html.escape(target)}" rel="noopener noreferrer">{emojify(text)}</a>'
    return text


def mrkdwn_html(text: str) -> str:
    """Slack mrkdwn as HTML: links and mentions, ``` and ` code, *bold*, _italic_, ~strike~, :emoji:, lines."""
    held: list[str] = []

    def hold(fragment: str) -> str:
        held.append(fragment)
        return f"\x00{len(held) - 1}\x00"

    text = text.replace("\x00", "")
    text = CODE_BLOCK.sub(lambda m: hold(f"<pre>{html.escape(unescape_slack(m.group(1)))}</pre>"), text)
    text = SPECIAL.sub(lambda m: hold(special_html(m.group(1), m.group(2))), text)
    text = CODE.sub(lambda m: hold(f"<code>{html.escape(unescape_slack(m.group(1)))}</code>"), text)
    out = html.escape(unescape_slack(text), quote=False)
    out = BOLD.sub(r"<b>\1</b>", out)
    out = ITALIC.sub(r"<i>\1</i>", out)
    out = STRIKE.sub(r"<s>\1</s>", out)
    out = emojify(out).replace("\n", "<br>")
    return re.sub(r"\x00(\d+)\x00", lambda m: held[int(m.group(1))], out)


def text_object_html(obj: Any) -> str:
    """A Block Kit text object (mrkdwn or plain_text) as HTML."""
    if not isinstance(obj, dict):
        return ""
    text = str(obj.get("text", ""))
    if obj.get("type") == "mrkdwn":
        return mrkdwn_html(text)
    return emojify(html.escape(text)).replace("\n", "<br>")


def block_html(block: dict[str, Any]) -> str:
    kind = block.get("type")
    if kind == "header":
        return f'<div class="header">{text_object_html(block.get("text"))}</div>'
    if kind == "section":
        parts = [text_object_html(block.get("text"))]
        fields = [f"<div>{text_object_html(f)}</div>" for f in block.get("fields") or []]
        if fields:
            parts.append(f'<div class="fields">{"".join(fields)}</div>')
        return f'<div class="section">{"".join(parts)}</div>'
    if kind == "context":
        bits = [
            f'<img src="{html.escape(str(e.get("image_url", "")))}" alt="{html.escape(str(e.get("alt_text", "")))}">'
            if isinstance(e, dict) and e.get("type") == "image"
            else text_object_html(e)
            for e in block.get("elements") or []
        ]
        return f'<div class="context">{" ".join(bits)}</div>'
    if kind == "divider":
        return "<hr>"
    if kind == "image":
        src, alt = html.escape(str(block.get("image_url", ""))), html.escape(str(block.get("alt_text", "")))
        return f'<figure>{text_object_html(block.get("title"))}<img src="{src}" alt="{alt}"></figure>'
    return f'<div class="muted">[a {html.escape(str(kind))} block]</div>'


# -- the page ----------------------------------------------------------------

PAGE_CSS = """
body { font: 15px/1.45 -apple-system, "Segoe UI", "Noto Sans", "Noto Color Emoji", sans-serif; margin: 0;
  background: #fff; color: #1d1c1d; }
header { position: sticky; top: 0; background: #3f0e40; color: #fff; padding: .6em 1em; }
header small { opacity: .8; margin-left: 1em; }
main { max-width: 60em; padding: 0 1em 2em; }
.msg { display: flex; gap: .7em; padding: .5em 0; border-bottom: 1px solid #eee; }
.avatar { flex: none; width: 2.2em; height: 2.2em; border-radius: 6px; background: #1264a3; color: #fff;
  text-align: center; line-height: 2.2em; font-weight: bold; }
.who { font-weight: bold; } .when, .via, .muted { color: #616061; font-size: 12px; }
.when .local { margin-left: .4em; }
.header { font-size: 18px; font-weight: bold; margin: .2em 0; }
.section, .context { margin: .2em 0; } .context { color: #616061; font-size: 13px; }
.fields { display: grid; grid-template-columns: 1fr 1fr; gap: .2em 1em; }
.mention { background: #e8f5fa; color: #1264a3; border-radius: 3px; padding: 0 2px; }
pre { background: #f8f8f8; border: 1px solid #ddd; border-radius: 4px; padding: .5em; white-space: pre-wrap;
  overflow-x: auto; font-size: 12px; }
code { background: #f2f2f2; border: 1px solid #ddd; border-radius: 3px; padding: 0 2px; color: #c01343; }
img.file, figure img { max-width: 100%; max-height: 32em; border: 1px solid #ddd; border-radius: 6px; }
figure { margin: .3em 0; } a { color: #1264a3; }
.file-title { font-weight: bold; font-size: 13px; margin-top: .3em; }
"""

PAGE_JS = """
// Reload every few seconds; stay at the newest message unless the reader scrolled up.
(function () {
  const key = "sim-slack-y";
  history.scrollRestoration = "manual";
  window.addEventListener("load", function () {  // after the images: they change the page's height
    const saved = sessionStorage.getItem(key);
    window.scrollTo(0, saved === null ? document.body.scrollHeight : Number(saved));
  });
  const every = Number(document.body.dataset.refreshS || "10") * 1000;
  setTimeout(function () {
    const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    if (atBottom) sessionStorage.removeItem(key); else sessionStorage.setItem(key, String(window.scrollY));
    location.reload();
  }, every);
})();
"""


def file_html(f: dict[str, Any], slack: SlackStandIn) -> str:
    url, title = html.escape(str(f.get("url", ""))), html.escape(str(f.get("title", "")))
    size = f'<span class="muted">{f.get("size", 0)} bytes</span>'
    head = f'<div class="file-title">📎 <a href="{url}">{title}</a> {size}</div>'
    if str(f.get("mimetype", "")).startswith("image/"):
        return f'{head}<a href="{url}"><img class="file" src="{url}" alt="{title}"></a>'
    path = slack.file_path(str(f.get("url", "")).rsplit("/", 1)[-1])
    if path is not None and str(f.get("mimetype", "")).startswith("text/"):
        text = path.read_bytes()[:SNIPPET_SHOW_BYTES].decode("utf-8", errors="replace")
        return f"{head}<pre>{html.escape(text)}</pre>"
    return head


def message_html(m: dict[str, Any], slack: SlackStandIn) -> str:
    blocks = m.get("blocks") if isinstance(m.get("blocks"), list) else None
    body = "".join(block_html(b) for b in blocks if isinstance(b, dict)) if blocks else mrkdwn_html(m.get("text", ""))
    if blocks is not None and not body:
        body = mrkdwn_html(m.get("text", ""))
    body += "".join(file_html(f, slack) for f in m.get("files") or [])
    utc, local = when_text(m["at"], slack.tz, "datetime")
    channel = f" #{html.escape(m['channel'])}" if m.get("channel") else ""
    return (
        f'<div class="msg" id="m{html.escape(m["ts"])}"><div class="avatar">G</div><div>'
        f'<span class="who">gozen</span> <time class="when" datetime="{html.escape(m["at"])}">{html.escape(utc)} '
        f'<span class="local">{html.escape(local)}</span></time> <span class="via">via {html.escape(m["via"])}'
        f"{channel}</span><div>{body}</div></div></div>"
    )


def page_html(slack: SlackStandIn, refresh_s: float = 10.0) -> str:
    shown = slack.messages[-PAGE_MESSAGES:]
    more = len(slack.messages) - len(shown)
    older = f'<p class="muted">{more} older messages in /sim/slack.json</p>' if more else ""
    rows = "\n".join(message_html(m, slack) for m in shown) or '<p class="muted">Nothing posted yet.</p>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>#gozen · Slack stand-in</title><link rel="stylesheet" href="/sim/slack.css"></head>'
        f'<body data-refresh-s="{refresh_s:g}"><header><b>#gozen</b><small>Slack stand-in of the simulated '
        f"observatory: {len(slack.messages)} messages</small></header><main>{older}{rows}</main>"
        '<script src="/sim/slack.js"></script></body></html>'
    )
