"""Android's key codes (android.view.KeyEvent) for our key names, the system buttons'
key codes, and common app names' packages: the tables environments/android.py drives
a device with."""

# Android key codes (android.view.KeyEvent) of the canonical key names.
KEYCODES: dict[str, int] = {
    "enter": 66, "backspace": 67, "delete": 112, "tab": 61, "escape": 111, "space": 62,
    "up": 19, "down": 20, "left": 21, "right": 22, "home": 122, "end": 123,
    "pageup": 92, "pagedown": 93, "menu": 82, "ctrl": 113, "shift": 59, "alt": 57,
    "meta": 117, "capslock": 115, "insert": 124, "printscreen": 120,
    **{str(d): 7 + d for d in range(10)},
    **{chr(ord("a") + i): 29 + i for i in range(26)},
    **{f"f{i}": 130 + i for i in range(1, 13)},
    # The mobile key space (actions.models.MOBILE_KEYS), android.view.KeyEvent codes.
    "call": 5, "endcall": 6, "dpad_center": 23, "volume_up": 24, "volume_down": 25,
    "power": 26, "camera": 27, "clear": 28, "explorer": 64, "envelope": 65,
    "headsethook": 79, "focus": 80, "notification": 83, "search": 84,
    "media_play_pause": 85, "media_stop": 86, "media_next": 87, "media_previous": 88,
    "mute": 91, "media_play": 126, "media_pause": 127, "volume_mute": 164, "zoom_in": 168,
    "zoom_out": 169, "settings": 176, "contacts": 207, "calendar": 208, "music": 209,
    "calculator": 210, "assist": 219, "brightness_down": 220, "brightness_up": 221,
    "sleep": 223, "wakeup": 224, "voice_assist": 231, "cut": 277, "copy": 278, "paste": 279,
}
# Menu is the cookbook's "application background menu" (recent apps): KEYCODE_APP_SWITCH,
# not KEYCODE_MENU (82, the options-menu key, reachable as Key(keys=("menu",))).
SYSTEM_BUTTON_KEYCODES: dict[str, int] = {"back": 4, "home": 3, "menu": 187, "enter": 66}

# Common app names -> packages on stock Android / Pixel images (AndroidWorld's apps).
DEFAULT_APP_PACKAGES: dict[str, str] = {
    "settings": "com.android.settings",
    "chrome": "com.android.chrome",
    "camera": "com.android.camera2",
    "clock": "com.google.android.deskclock",
    "contacts": "com.google.android.contacts",
    "phone": "com.google.android.dialer",
    "messages": "com.google.android.apps.messaging",
    "files": "com.google.android.documentsui",
    "calendar": "com.google.android.calendar",
    "gmail": "com.google.android.gm",
    "youtube": "com.google.android.youtube",
    "maps": "com.google.android.apps.maps",
    "play store": "com.android.vending",
}
