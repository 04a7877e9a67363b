"""Slack's emoji codes (`:warning:`) shown as emoji on the pages: the Jinja filter `emoji`.

gozen's messages are written for Slack, which draws the codes; the pages draw the same ones.
A code not in the table is left as it is. The text is escaped first, so the filter is safe on
any message.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

# Every code gozen's messages use (couriers/watch.py, the nightly report, the alerts), and the
# common ones a person might write in a notifier's template.
EMOJI = {
    "rotating_light": "\U0001f6a8",
    "warning": "\u26a0\ufe0f",
    "white_check_mark": "\u2705",
    "repeat": "\U0001f501",
    "x": "\u274c",
    "heavy_check_mark": "\u2714\ufe0f",
    "exclamation": "\u2757",
    "red_circle": "\U0001f534",
    "large_green_circle": "\U0001f7e2",
    "large_yellow_circle": "\U0001f7e1",
    "information_source": "\u2139\ufe0f",
    "bell": "\U0001f514",
    "telescope": "\U0001f52d",
    "satellite": "\U0001f6f0\ufe0f",
    "satellite_antenna": "\U0001f4e1",
    "star": "\u2b50",
    "star2": "\U0001f31f",
    "boom": "\U0001f4a5",
    "comet": "\u2604\ufe0f",
    "milky_way": "\U0001f30c",
    "new_moon": "\U0001f311",
    "full_moon": "\U0001f315",
    "crescent_moon": "\U0001f319",
    "sunny": "\u2600\ufe0f",
    "sunrise": "\U0001f305",
    "city_sunset": "\U0001f306",
    "cloud": "\u2601\ufe0f",
    "rain_cloud": "\U0001f327\ufe0f",
    "umbrella": "\u2614",
    "dash": "\U0001f4a8",
    "zap": "\u26a1",
    "fire": "\U0001f525",
    "snowflake": "\u2744\ufe0f",
    "thermometer": "\U0001f321\ufe0f",
    "droplet": "\U0001f4a7",
    "battery": "\U0001f50b",
    "electric_plug": "\U0001f50c",
    "floppy_disk": "\U0001f4be",
    "cd": "\U0001f4bf",
    "file_folder": "\U0001f4c1",
    "package": "\U0001f4e6",
    "inbox_tray": "\U0001f4e5",
    "outbox_tray": "\U0001f4e4",
    "bar_chart": "\U0001f4ca",
    "chart_with_upwards_trend": "\U0001f4c8",
    "chart_with_downwards_trend": "\U0001f4c9",
    "clipboard": "\U0001f4cb",
    "memo": "\U0001f4dd",
    "page_facing_up": "\U0001f4c4",
    "calendar": "\U0001f4c6",
    "clock": "\U0001f570\ufe0f",
    "hourglass": "\u231b",
    "hourglass_flowing_sand": "\u23f3",
    "stopwatch": "\u23f1\ufe0f",
    "alarm_clock": "\u23f0",
    "camera": "\U0001f4f7",
    "movie_camera": "\U0001f3a5",
    "frame_with_picture": "\U0001f5bc\ufe0f",
    "mag": "\U0001f50d",
    "link": "\U0001f517",
    "lock": "\U0001f512",
    "unlock": "\U0001f513",
    "key": "\U0001f511",
    "wrench": "\U0001f527",
    "hammer_and_wrench": "\U0001f6e0\ufe0f",
    "gear": "\u2699\ufe0f",
    "robot_face": "\U0001f916",
    "computer": "\U0001f4bb",
    "desktop_computer": "\U0001f5a5\ufe0f",
    "rocket": "\U0001f680",
    "tada": "\U0001f389",
    "sparkles": "\u2728",
    "eyes": "\U0001f440",
    "thumbsup": "\U0001f44d",
    "+1": "\U0001f44d",
    "thumbsdown": "\U0001f44e",
    "-1": "\U0001f44e",
    "ok": "\U0001f197",
    "new": "\U0001f195",
    "sos": "\U0001f198",
    "no_entry": "\u26d4",
    "no_entry_sign": "\U0001f6ab",
    "stop_sign": "\U0001f6d1",
    "construction": "\U0001f6a7",
    "arrows_counterclockwise": "\U0001f504",
    "recycle": "\u267b\ufe0f",
    "arrow_up": "\u2b06\ufe0f",
    "arrow_down": "\u2b07\ufe0f",
    "arrow_right": "\u27a1\ufe0f",
    "arrow_left": "\u2b05\ufe0f",
    "heavy_plus_sign": "\u2795",
    "heavy_minus_sign": "\u2796",
    "question": "\u2753",
    "grey_question": "\u2754",
    "bulb": "\U0001f4a1",
    "mega": "\U0001f4e3",
    "loudspeaker": "\U0001f4e2",
    "speech_balloon": "\U0001f4ac",
    "email": "\U0001f4e7",
    "envelope": "\u2709\ufe0f",
    "earth_asia": "\U0001f30f",
    "globe_with_meridians": "\U0001f310",
    "dizzy": "\U0001f4ab",
    "ringed_planet": "\U0001fa90",
    "sun_with_face": "\U0001f31e",
    "first_quarter_moon": "\U0001f313",
    "last_quarter_moon": "\U0001f317",
    "waning_gibbous_moon": "\U0001f316",
    "waxing_gibbous_moon": "\U0001f314",
}
CODE = re.compile(r":([a-z0-9_+-]+):")


def emojize(text: str) -> str:
    """`:warning: disk full` -> "⚠️ disk full"; unknown codes stay as they are."""
    return CODE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)


def emoji_filter(text: object) -> Markup:
    """The Jinja filter: the text escaped, then each known code drawn as its emoji (the code as its title)."""
    if text is None:
        return Markup("")

    def drawn(m: re.Match[str]) -> str:
        glyph = EMOJI.get(m.group(1))
        return m.group(0) if glyph is None else f'<span class="emoji" title="{m.group(0)}">{glyph}</span>'

    return Markup(CODE.sub(drawn, str(escape(text))))
