"""The X DAMAGE extension's few requests and its event, for python-xlib.

The python3-xlib that pyautogui pins (0.15) has no DAMAGE module, so the protocol's
messages are declared here with python-xlib's own `rq` structures, as its extension
modules (Xlib/ext/composite.py) declare theirs. Wire format: the DAMAGE protocol
specification (freedesktop.org, damageproto `damageproto.txt`, version 1.1):
QueryVersion (minor opcode 0), Create (1: DAMAGE, DRAWABLE, level CARD8), Subtract (3:
DAMAGE, repair REGION or None, parts REGION or None) and the DamageNotify event (level,
drawable, damage, timestamp, area and geometry rectangles; 32 bytes).

`RootDamage` watches the root window at level ReportNonEmpty: one event when the screen
gets damaged, re-armed with Subtract once read; a settle grabs a frame only after one.
"""

from __future__ import annotations

from typing import Any

from Xlib.protocol import rq

EXTENSION = "DAMAGE"
REPORT_NON_EMPTY = 3  # DamageReportNonEmpty: one event each time the damage region fills


class _QueryVersion(rq.ReplyRequest):
    _request = rq.Struct(
        rq.Card8("opcode"), rq.Opcode(0), rq.RequestLength(),
        rq.Card32("major_version"), rq.Card32("minor_version"))
    _reply = rq.Struct(
        rq.ReplyCode(), rq.Pad(1), rq.Card16("sequence_number"), rq.ReplyLength(),
        rq.Card32("major_version"), rq.Card32("minor_version"), rq.Pad(16))


class _Create(rq.Request):
    _request = rq.Struct(
        rq.Card8("opcode"), rq.Opcode(1), rq.RequestLength(),
        rq.Card32("damage"), rq.Drawable("drawable"), rq.Card8("level"), rq.Pad(3))


class _Subtract(rq.Request):
    _request = rq.Struct(
        rq.Card8("opcode"), rq.Opcode(3), rq.RequestLength(),
        rq.Card32("damage"), rq.Card32("repair"), rq.Card32("parts"))


class DamageNotify(rq.Event):
    _code = None
    _fields = rq.Struct(
        rq.Card8("type"), rq.Card8("level"), rq.Card16("sequence_number"),
        rq.Card32("drawable"), rq.Card32("damage"), rq.Card32("timestamp"),
        rq.Int16("x"), rq.Int16("y"), rq.Card16("width"), rq.Card16("height"),
        rq.Int16("geometry_x"), rq.Int16("geometry_y"), rq.Card16("geometry_width"),
        rq.Card16("geometry_height"))


class RootDamage:
    """Damage reports for the whole screen on `display` (a python-xlib Display whose
    events its owner reads). `event_type` is the DamageNotify event's code; call
    `rearm()` after reading one. Raises LookupError when the server lacks DAMAGE."""

    def __init__(self, display: Any) -> None:
        info = display.query_extension(EXTENSION)
        if info is None:
            raise LookupError("the X server does not offer the DAMAGE extension")
        self._display = display
        self._opcode = info.major_opcode
        self.event_type = info.first_event
        display.display.add_extension_event(self.event_type, DamageNotify)
        _QueryVersion(display=display.display, opcode=self._opcode,
                      major_version=1, minor_version=1)
        self._damage = display.display.allocate_resource_id()
        _Create(display=display.display, opcode=self._opcode, damage=self._damage,
                drawable=display.screen().root, level=REPORT_NON_EMPTY)
        display.sync()

    def rearm(self) -> None:
        """Empty the damage region, so that the next drawing sends a new event."""
        _Subtract(display=self._display.display, opcode=self._opcode, damage=self._damage,
                  repair=0, parts=0)
