"""AndroidWorld-style task templates for the virtual device's apps.

A template has a goal with parameters drawn from a seed (`generate_params`), sets the
device up through adb (`initialize`: clear the app's data, insert rows with `content
insert`, `settings put`), checks the device's state through adb afterwards
(`is_successful`: `content query`, `settings get`, or the agent's answer for question
tasks) and cleans up (`tear_down`). Every evaluator reads the device the way AndroidWorld
reads a phone's content providers: nothing looks into the virtual device's process.

`expert_plan` is what the scripted expert (benchmarks/android/expert.py) executes: steps
that name UI elements, which the expert finds in the observed accessibility tree and
acts on with pixel actions. The pieces every template is made of (device access, plan
steps, the `AndroidTask` base) are in benchmarks/android/task_base.py.
"""

from __future__ import annotations

import random
import re
from typing import Any, ClassVar

from actions.models import OpenApp, SystemButton
from benchmarks.android.task_base import (  # noqa: F401 - the templates' API, importable here
    AdbShell,
    AndroidTask,
    AnswerFrom,
    Do,
    Find,
    LongPressOn,
    PlanStep,
    SwipeLeftOn,
    Tap,
    TypeInto,
    content_insert,
    content_query,
    reset_app,
    step_budget,
)


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text or "")


def _norm(text: str | None) -> str:
    return re.sub(r"\s+", " ", (text or "").strip()).casefold()


CONTACTS, NOTES, TASKS = "com.vdev.contacts", "com.vdev.notes", "com.vdev.tasks"
SETTINGS, CLOCK = "com.vdev.settings", "com.vdev.clock"

FIRST_NAMES = ["Alice", "Bruno", "Chen", "Dana", "Emeka", "Fatima", "Goran", "Hana", "Ivan",
               "Julia", "Kenji", "Leila", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa"]
LAST_NAMES = ["Smith", "García", "Okafor", "Novak", "Tanaka", "Müller", "Rossi", "Kowalski",
              "Haddad", "Silva", "Dubois", "Larsen"]
NOTE_TITLES = ["Groceries", "Trip plan", "Book ideas", "Meeting notes", "Recipes", "Gift list",
               "Workout", "Garden"]
NOTE_BODIES = [
    "Buy milk, eggs and 'fresh' bread",
    'Pack the "blue" bag & check tickets',
    "Café crème at 9; ask about the piñata",
    "Read: \"Dune\", 'Emma' and Faust",
    "Call Zoë about the naïve plan",
    "Try the crêpes recipe (100% butter)",
]
TASK_TITLES = ["Pay rent", "Call mom", "Water plants", "Renew passport", "Book dentist",
               "Fix bike", "Send invoice", "Buy stamps", "Clean desk", "Email Priya"]
ALARM_LABELS = ["Gym", "Wake up", "Meds", "Standup", "School run", "Yoga", "Laundry"]
SWITCHES_TOP = [("global", "wifi_on", "Wi-Fi"), ("global", "bluetooth_on", "Bluetooth"),
                ("global", "airplane_mode_on", "Airplane mode"),
                ("secure", "ui_night_mode", "Dark theme")]
SWITCHES_BELOW = [("secure", "location_on", "Location"), ("global", "zen_mode", "Do not disturb"),
                  ("system", "accelerometer_rotation", "Auto-rotate screen")]


def _person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def _people(rng: random.Random, count: int) -> list[str]:
    names: list[str] = []
    while len(names) < count:
        name = _person(rng)
        if name.split()[0] not in {n.split()[0] for n in names}:
            names.append(name)
    return names


def _phone(rng: random.Random) -> str:
    return f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"


CONTACT_COLUMNS = ("name", "phone", "email", "starred")


class _ContactsTask(AndroidTask):
    app = CONTACTS

    def initialize(self, device: AdbShell) -> None:
        super().initialize(device)
        for name, phone in self.params.get("existing", []):
            content_insert(device, CONTACTS, "contacts", name=name, phone=phone, email="",
                           starred=0)

    def contacts(self, device: AdbShell) -> list[dict[str, str]]:
        return content_query(device, CONTACTS, "contacts", CONTACT_COLUMNS)


class ContactsAddContact(_ContactsTask):
    name = "ContactsAddContact"
    complexity = 1.2  # AndroidWorld's own ContactsAddContact
    template = "Create a new contact for {contact_name}. Their number is {phone}."

    @classmethod
    def generate_params(cls, rng):
        names = _people(rng, 3)
        return {"contact_name": names[0], "phone": _phone(rng),
                "existing": [[n, _phone(rng)] for n in names[1:]]}

    def is_successful(self, device, answer):
        rows = self.contacts(device)
        ok = any(_norm(r["name"]) == _norm(self.params["contact_name"])
                 and _digits(r.get("phone", "")) == _digits(self.params["phone"]) for r in rows)
        return float(ok and len(rows) == len(self.params["existing"]) + 1)

    def expert_plan(self):
        return [Do(OpenApp(name="Contacts")), Tap(Find(resource_id="add_contact")),
                TypeInto(Find(resource_id="name"), self.params["contact_name"]),
                TypeInto(Find(resource_id="phone"), self.params["phone"]),
                Tap(Find(resource_id="save"))]


class ContactsDeleteContact(_ContactsTask):
    name = "ContactsDeleteContact"
    complexity = 1.0  # as MarkorDeleteNote
    template = "Delete the contact {contact_name}."

    @classmethod
    def generate_params(cls, rng):
        names = _people(rng, 9)
        existing = [[n, _phone(rng)] for n in names]
        return {"contact_name": rng.choice(names[5:]), "existing": existing}

    def is_successful(self, device, answer):
        names = {_norm(r["name"]) for r in self.contacts(device)}
        others = {_norm(n) for n, _ in self.params["existing"]} - {
            _norm(self.params["contact_name"])}
        return float(_norm(self.params["contact_name"]) not in names and others <= names)

    def expert_plan(self):
        return [Do(OpenApp(name="Contacts")),
                LongPressOn(Find(text=self.params["contact_name"])),
                Tap(Find(resource_id="confirm_delete"))]


class ContactsFavorite(_ContactsTask):
    name = "ContactsFavorite"
    complexity = 1.2  # as MarkorEditNote
    template = "Add {contact_name} to my favorite contacts."

    @classmethod
    def generate_params(cls, rng):
        names = _people(rng, 4)
        return {"contact_name": names[0], "existing": [[n, _phone(rng)] for n in names]}

    def is_successful(self, device, answer):
        starred = {_norm(r["name"]) for r in self.contacts(device) if r.get("starred") == "1"}
        return float(starred == {_norm(self.params["contact_name"])})

    def expert_plan(self):
        return [Do(OpenApp(name="Contacts")), Tap(Find(text=self.params["contact_name"])),
                Tap(Find(resource_id="favorite"))]


class ContactsPhoneQuestion(_ContactsTask):
    name = "ContactsPhoneQuestion"
    complexity = 1.0  # as a one-lookup question
    template = "What is the phone number of {contact_name}? Answer with the number only."

    @classmethod
    def generate_params(cls, rng):
        names = _people(rng, 5)
        existing = [[n, _phone(rng)] for n in names]
        target = rng.choice(existing)
        return {"contact_name": target[0], "phone": target[1], "existing": existing}

    def is_successful(self, device, answer):
        return float(bool(answer) and _digits(answer) == _digits(self.params["phone"]))

    def expert_plan(self):
        return [Do(OpenApp(name="Contacts")), Tap(Find(text=self.params["contact_name"])),
                AnswerFrom(Find(resource_id="detail_phone"))]


NOTE_COLUMNS = ("title", "body")


class _NotesTask(AndroidTask):
    app = NOTES

    def initialize(self, device):
        super().initialize(device)
        for title, body in self.params.get("existing", []):
            content_insert(device, NOTES, "notes", title=title, body=body)

    def notes(self, device):
        return content_query(device, NOTES, "notes", NOTE_COLUMNS)


class NotesCreateNote(_NotesTask):
    name = "NotesCreateNote"
    complexity = 1.6  # as MarkorCreateNote
    template = 'Create a note titled "{title}" with the text: {body}'

    @classmethod
    def generate_params(cls, rng):
        titles = rng.sample(NOTE_TITLES, 2)
        return {"title": titles[0], "body": rng.choice(NOTE_BODIES),
                "existing": [[titles[1], rng.choice(NOTE_BODIES)]]}

    def is_successful(self, device, answer):
        return float(any(r["title"].strip() == self.params["title"]
                         and r.get("body", "").strip() == self.params["body"]
                         for r in self.notes(device)))

    def expert_plan(self):
        return [Do(OpenApp(name="Notes")), Tap(Find(resource_id="add_note")),
                TypeInto(Find(resource_id="title"), self.params["title"]),
                TypeInto(Find(resource_id="body"), self.params["body"]),
                Tap(Find(resource_id="save"))]


class NotesDeleteNote(_NotesTask):
    name = "NotesDeleteNote"
    complexity = 1.0  # as MarkorDeleteNote
    template = 'Delete the note "{title}".'

    @classmethod
    def generate_params(cls, rng):
        titles = rng.sample(NOTE_TITLES, 4)
        return {"title": titles[2], "existing": [[t, rng.choice(NOTE_BODIES)] for t in titles]}

    def is_successful(self, device, answer):
        titles = [r["title"] for r in self.notes(device)]
        return float(self.params["title"] not in titles
                     and len(titles) == len(self.params["existing"]) - 1)

    def expert_plan(self):
        return [Do(OpenApp(name="Notes")), LongPressOn(Find(text=self.params["title"])),
                Tap(Find(resource_id="confirm_delete"))]


TASK_COLUMNS = ("title", "done")


class _TasksTask(AndroidTask):
    app = TASKS

    def initialize(self, device):
        super().initialize(device)
        for title, done in self.params.get("existing", []):
            content_insert(device, TASKS, "tasks", title=title, done=done)

    def tasks(self, device):
        return content_query(device, TASKS, "tasks", TASK_COLUMNS)


class TasksAddTask(_TasksTask):
    name = "TasksAddTask"
    complexity = 1.2  # as MarkorEditNote
    template = 'Add a task "{title}" to my to-do list.'

    @classmethod
    def generate_params(cls, rng):
        titles = rng.sample(TASK_TITLES, 3)
        return {"title": titles[0], "existing": [[t, 0] for t in titles[1:]]}

    def is_successful(self, device, answer):
        rows = self.tasks(device)
        return float(sum(r["title"] == self.params["title"] for r in rows) == 1
                     and len(rows) == len(self.params["existing"]) + 1)

    def expert_plan(self):
        # Enter submits the field: exercises the enter system button.
        return [Do(OpenApp(name="Tasks")),
                TypeInto(Find(resource_id="new_task"), self.params["title"]),
                Do(SystemButton(button="enter"))]


class TasksCompleteTask(_TasksTask):
    name = "TasksCompleteTask"
    complexity = 1.0  # as MarkorDeleteNote
    template = 'Mark the task "{title}" as done.'

    @classmethod
    def generate_params(cls, rng):
        titles = rng.sample(TASK_TITLES, 4)
        return {"title": titles[1], "existing": [[t, 0] for t in titles]}

    def is_successful(self, device, answer):
        done = {r["title"] for r in self.tasks(device) if r.get("done") == "1"}
        return float(done == {self.params["title"]})

    def expert_plan(self):
        return [Do(OpenApp(name="Tasks")), Tap(Find(desc="Done: " + self.params["title"]))]


class TasksDeleteTask(_TasksTask):
    name = "TasksDeleteTask"
    complexity = 1.0  # as MarkorDeleteNote
    template = 'Delete the task "{title}" (swipe it away).'

    @classmethod
    def generate_params(cls, rng):
        titles = rng.sample(TASK_TITLES, 4)
        return {"title": titles[2], "existing": [[t, 0] for t in titles]}

    def is_successful(self, device, answer):
        titles = [r["title"] for r in self.tasks(device)]
        return float(self.params["title"] not in titles and len(titles) == 3)

    def expert_plan(self):
        return [Do(OpenApp(name="Tasks")), SwipeLeftOn(Find(text=self.params["title"]))]


class TasksRemainingQuestion(_TasksTask):
    name = "TasksRemainingQuestion"
    complexity = 1.0  # as a one-lookup question
    template = "How many tasks are left to do in my to-do list? Answer with a number."

    @classmethod
    def generate_params(cls, rng):
        titles = rng.sample(TASK_TITLES, rng.randint(3, 7))
        existing = [[t, rng.randint(0, 1)] for t in titles]
        return {"existing": existing, "remaining": sum(1 - d for _, d in existing)}

    def is_successful(self, device, answer):
        return float(_digits(answer or "") == str(self.params["remaining"]))

    def expert_plan(self):
        return [Do(OpenApp(name="Tasks")),
                AnswerFrom(Find(resource_id="remaining"), pattern=r"(\d+)")]


class _SettingsTask(AndroidTask):
    app = SETTINGS
    choices: ClassVar[list[tuple[str, str, str]]]

    @classmethod
    def generate_params(cls, rng):
        namespace, key, label = rng.choice(cls.choices)
        return {"namespace": namespace, "key": key, "label": label,
                "state": rng.choice(["on", "off"])}

    def initialize(self, device):
        super().initialize(device)
        start = "0" if self.params["state"] == "on" else "1"
        device.shell(f"settings put {self.params['namespace']} {self.params['key']} {start}")

    def is_successful(self, device, answer):
        value = device.shell(f"settings get {self.params['namespace']} {self.params['key']}")
        return float(value.strip() == ("1" if self.params["state"] == "on" else "0"))

    def expert_plan(self):
        return [Do(OpenApp(name="Settings")), Tap(Find(desc=self.params["label"]))]


class SettingsToggle(_SettingsTask):
    name = "SettingsToggle"
    complexity = 1.0  # as SystemWifiTurnOn
    template = "Turn {label} {state}."
    choices = SWITCHES_TOP


class SettingsToggleBelowFold(_SettingsTask):
    name = "SettingsToggleBelowFold"
    complexity = 2.0  # SystemWifiTurnOn plus scrolling
    template = "In Settings, turn {label} {state}."
    choices = SWITCHES_BELOW


ALARM_COLUMNS = ("hour", "minute", "label", "enabled")


class _ClockTask(AndroidTask):
    app = CLOCK

    def initialize(self, device):
        super().initialize(device)
        for hour, minute, label in self.params.get("existing", []):
            content_insert(device, CLOCK, "alarms", hour=hour, minute=minute, label=label,
                           enabled=1)

    def alarms(self, device):
        return content_query(device, CLOCK, "alarms", ALARM_COLUMNS)


def _alarms(rng: random.Random, count: int) -> list[list]:
    labels = rng.sample(ALARM_LABELS, count)
    return [[rng.randint(5, 22), rng.choice([0, 15, 30, 45]), label] for label in labels]


class ClockAddAlarm(_ClockTask):
    name = "ClockAddAlarm"
    complexity = 1.6  # as MarkorCreateNote
    template = 'Set an alarm for {hour:02d}:{minute:02d} labeled "{label}".'

    @classmethod
    def generate_params(cls, rng):
        existing = _alarms(rng, 2)
        label = rng.choice([x for x in ALARM_LABELS if x not in {e[2] for e in existing}])
        return {"hour": rng.randint(0, 23), "minute": rng.randint(0, 59), "label": label,
                "existing": existing}

    def is_successful(self, device, answer):
        return float(any(r["hour"] == str(self.params["hour"])
                         and r["minute"] == str(self.params["minute"])
                         and r["label"] == self.params["label"] and r["enabled"] == "1"
                         for r in self.alarms(device)))

    def expert_plan(self):
        return [Do(OpenApp(name="Clock")), Tap(Find(resource_id="add_alarm")),
                TypeInto(Find(resource_id="hour"), str(self.params["hour"])),
                TypeInto(Find(resource_id="minute"), str(self.params["minute"])),
                TypeInto(Find(resource_id="label"), self.params["label"]),
                Tap(Find(resource_id="save"))]


class ClockDisableAlarm(_ClockTask):
    name = "ClockDisableAlarm"
    complexity = 1.0  # as ClockStopWatchRunning
    template = 'Turn off the "{label}" alarm.'

    @classmethod
    def generate_params(cls, rng):
        existing = _alarms(rng, 3)
        return {"label": rng.choice(existing)[2], "existing": existing}

    def is_successful(self, device, answer):
        enabled = {r["label"]: r["enabled"] for r in self.alarms(device)}
        others = [lbl for _, _, lbl in self.params["existing"] if lbl != self.params["label"]]
        return float(enabled.get(self.params["label"]) == "0"
                     and all(enabled.get(o) == "1" for o in others))

    def expert_plan(self):
        return [Do(OpenApp(name="Clock")), Tap(Find(desc="Alarm " + self.params["label"]))]


class ClockAlarmQuestion(_ClockTask):
    name = "ClockAlarmQuestion"
    complexity = 1.0  # as a one-lookup question
    template = 'What time is the "{label}" alarm set for? Answer as HH:MM.'

    @classmethod
    def generate_params(cls, rng):
        existing = _alarms(rng, 3)
        hour, minute, label = rng.choice(existing)
        return {"label": label, "time": f"{hour:02d}:{minute:02d}", "existing": existing}

    def is_successful(self, device, answer):
        match = re.search(r"(\d{1,2})\s*[:.h]\s*(\d{2})", answer or "")
        return float(bool(match) and f"{int(match.group(1)):02d}:{match.group(2)}"
                     == self.params["time"])

    def expert_plan(self):
        return [Do(OpenApp(name="Clock")),
                AnswerFrom(Find(text=self.params["label"]), pattern=r"(\d\d:\d\d)",
                           in_parent=True)]


TASK_TYPES: dict[str, type[AndroidTask]] = {cls.name: cls for cls in (
    ContactsAddContact, ContactsDeleteContact, ContactsFavorite, ContactsPhoneQuestion,
    NotesCreateNote, NotesDeleteNote, TasksAddTask, TasksCompleteTask, TasksDeleteTask,
    TasksRemainingQuestion, SettingsToggle, SettingsToggleBelowFold, ClockAddAlarm,
    ClockDisableAlarm, ClockAlarmQuestion,
)}


def instantiate(task_id: str, seed: int, params: dict[str, Any] | None = None) -> AndroidTask:
    """The template `task_id` with parameters drawn from `seed` (or given `params`)."""
    if task_id not in TASK_TYPES:
        raise KeyError(f"unknown android task {task_id!r}; tasks: {', '.join(sorted(TASK_TYPES))}")
    cls = TASK_TYPES[task_id]
    return cls(params if params is not None else cls.generate_params(random.Random(seed)))


__all__ = ["AdbShell", "AndroidTask", "TASK_TYPES", "content_insert", "content_query",
           "instantiate"]
