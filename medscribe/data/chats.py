"""Chat exports -> messages -> dialogues of alternating user/assistant turns.

    from medscribe.data.chats import read_chat_file, dialogues_of
    messages, info = read_chat_file(path, label, settings.data.chats)     # Telegram JSON, WhatsApp TXT, JSONL
    dialogues = dialogues_of(messages, settings.data.chats)                # [Dialogue(key, turns), ...]

Formats (by suffix, checked by content):
- **Telegram** (`result.json` of Telegram Desktop's "Export chat history", JSON): one chat (`{"messages":
  [...]}`) or a full export (`{"chats": {"list": [{"messages": [...]}, ...]}}`). Messages of `type` "message"
  with `from`/`from_id`, `date` (ISO local time) and `text`, a string or a list of strings and entities
  (`{"type": "bold", "text": ...}`), whose texts are joined. Service messages and media without a caption are
  skipped (and counted).
- **WhatsApp** (`.txt` of "Export chat"): Android `31.12.21, 21:41 - Name: text` / `12/31/21, 9:41 PM - Name:
  text`, iOS `[31.12.21, 21:41:05] Name: text`. Day/month order: `data.chats.date_order` (`auto`: month-first
  only when some first number is <= 12 and some second one > 12; ambiguous files are read day-first and
  the manifest says so). Lines without a date continue the previous message; lines without "Name:" are
  system lines (skipped); `<Media omitted>` and the like are skipped.
- **JSONL**: `{dialogue_id, role | author, text, time}` per line. `role` (user/assistant) wins over `author`
  (mapped by `data.chats.assistant`); `time` (ISO or Unix seconds) is optional.

Dialogues: a new one starts with a new chat or `dialogue_id`, or after a pause longer than
`data.chats.gap_minutes`. The author names in `data.chats.assistant` (or a Telegram `from_id`) are the
assistant, everyone else the user. Consecutive messages of one role are merged into one turn ("\\n" between
them); assistant turns before the first user turn are dropped (counted). Author names never leave this module:
they only decide roles (and are replaced in the texts, chat_samples.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medscribe.data.encoding import decode_bytes
from medscribe.errors import UsageError

CHAT_SUFFIXES = {".json", ".txt", ".jsonl", ".ndjson"}
# WhatsApp: date, time (12 h with AM/PM or 24 h), then " - " (Android) or "] " (iOS)
_WA_DATE = r"(\d{1,2})[./-](\d{1,2})[./-](\d{2,4}),?\s+(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*([AaPp])\.?\s?[Mm]\.?)?"
WA_ANDROID = re.compile(rf"^{_WA_DATE}\s+[-–]\s+(.*)$")
WA_IOS = re.compile(rf"^\[{_WA_DATE}\]\s+(.*)$")
WA_MEDIA = re.compile(r"^<?(media omitted|медиа отсутствуют|медиафайл отсутствует|image omitted|video omitted|"
                      r"audio omitted|sticker omitted|document omitted|gif omitted|изображение отсутствует|"
                      r"this message was deleted|данное сообщение удалено|attached: [^>]+|прикреплено: [^>]+|"
                      r"[^<>]+ \(file attached\)|[^<>]+ \(файл добавлен\))>?$", re.IGNORECASE)
ROLES = {"user": "user", "human": "user", "patient": "user", "assistant": "assistant", "gpt": "assistant",
         "bot": "assistant", "doctor": "assistant"}


@dataclass
class Message:
    chat: str  # chat / dialogue_id within the file ("" when the file is one chat)
    author: str
    text: str
    time: datetime | None
    line: int  # line (TXT, JSONL) or message number (Telegram JSON) for provenance
    role: str | None = None  # set by the file (JSONL `role`) or from the persona
    author_id: str = ""  # Telegram `from_id` ("user123456"): the persona may name it instead of the name


@dataclass
class Dialogue:
    key: str  # "<file label>#<n>"
    file: str
    line: int  # where it starts
    turns: list[dict] = field(default_factory=list)  # [{"role", "content"}], alternating, starting with user


@dataclass
class ChatFileInfo:
    file: str
    format: str
    messages: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    authors: int = 0
    notes: list[str] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)  # broken JSONL lines: {file, row, reason, detail}

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


def read_chat_file(path: Path, label: str, chats: Any) -> tuple[list[Message], ChatFileInfo]:
    raw = path.read_bytes()
    if not raw.strip():
        raise UsageError(f"{path}: file is empty")
    text, _ = decode_bytes(raw, path, None)
    suffix = path.suffix.lower()
    if suffix == ".json":
        messages, info = _telegram(path, text, label)
    elif suffix == ".txt":
        messages, info = _whatsapp(path, text, label, chats.date_order)
    elif suffix in (".jsonl", ".ndjson"):
        messages, info = _jsonl(path, text, label)
    else:
        raise UsageError(f"{path}: not a chat export (use a Telegram .json, a WhatsApp .txt or a .jsonl file)")
    info.messages = len(messages)
    info.authors = len({m.author for m in messages if m.author})
    assign_roles(messages, chats.assistant)
    if not messages:
        raise UsageError(f"{path}: no text messages found in this {info.format} export")
    if not any(m.role == "assistant" for m in messages):
        who = f"data.chats.assistant = {list(chats.assistant)}" if chats.assistant else "data.chats.assistant is empty"
        raise UsageError(f"{path}: no message by the assistant ({who}; {info.messages} messages by {info.authors} "
                         "authors): set data.chats.assistant to the author names that are the assistant")
    return messages, info


def assign_roles(messages: list[Message], assistant: list[str]) -> None:
    persona = {a.strip().casefold() for a in assistant if a.strip()}
    for m in messages:
        if m.role is None:
            ids = {m.author.strip().casefold(), m.author_id.casefold()} - {""}
            m.role = "assistant" if ids & persona else "user"


def _telegram(path: Path, text: str, label: str) -> tuple[list[Message], ChatFileInfo]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if isinstance(obj, dict) and isinstance(obj.get("chats"), dict) and isinstance(obj["chats"].get("list"), list):
        chats = obj["chats"]["list"]
    elif isinstance(obj, dict) and isinstance(obj.get("messages"), list):
        chats = [obj]
    else:
        raise UsageError(f"{path}: not a Telegram export (expected {{\"messages\": [...]}} or {{\"chats\": "
                         "{\"list\": [...]}}})")
    info = ChatFileInfo(label, "telegram")
    messages: list[Message] = []
    for c, chat in enumerate(chats, start=1):
        for n, msg in enumerate(chat.get("messages") or [], start=1):
            if not isinstance(msg, dict) or msg.get("type", "message") != "message":
                info.skip("service")
                continue
            body = _telegram_text(msg.get("text"))
            if not body.strip():
                info.skip("media_or_empty")
                continue
            author = str(msg.get("from") or msg.get("from_id") or "")
            when = _parse_time(msg.get("date_unixtime") or msg.get("date"))
            messages.append(Message(str(c), author, body, when, n, author_id=str(msg.get("from_id") or "")))
    return messages, info


def _telegram_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(part if isinstance(part, str) else str(part.get("text", "")) if isinstance(part, dict) else ""
                       for part in value)
    return ""


def _whatsapp(path: Path, text: str, label: str, date_order: str) -> tuple[list[Message], ChatFileInfo]:
    info = ChatFileInfo(label, "whatsapp")
    heads: list[tuple[int, re.Match]] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    parsed: list[tuple[int, re.Match | None, str]] = []
    for lineno, line in enumerate(lines, start=1):
        clean = line.replace("\u200e", "").replace("\u200f", "").replace("\u202f", " ").replace("\u00a0", " ")
        match = WA_IOS.match(clean) or WA_ANDROID.match(clean)
        parsed.append((lineno, match, clean))
        if match:
            heads.append((lineno, match))
    if not heads:
        raise UsageError(f"{path}: not a WhatsApp export (no line starts with a date and time, "
                         "e.g. '31.12.21, 21:41 - Name: text')")
    order = date_order
    if order == "auto":
        firsts = [int(m.group(1)) for _, m in heads]
        seconds = [int(m.group(2)) for _, m in heads]
        order = "mdy" if max(seconds) > 12 and max(firsts) <= 12 else "dmy"
        if max(firsts) <= 12 and max(seconds) <= 12:
            info.notes.append("day/month order ambiguous (no number above 12): read day-first; "
                              "set data.chats.date_order = 'mdy' for US exports")
    messages: list[Message] = []
    current: Message | None = None
    for lineno, match, clean in parsed:
        if match is None:
            if current is not None:
                current.text += "\n" + clean
            continue
        current = None
        rest = match.group(8)
        author, sep, body = rest.partition(": ")
        if not sep:
            info.skip("system")
            continue
        when = _wa_time(match, order)
        if when is None:
            info.skip("bad_date")
            continue
        current = Message("", author.strip(), body, when, lineno)
        messages.append(current)
    kept = []
    for m in messages:
        if WA_MEDIA.match(m.text.strip()) or not m.text.strip():
            info.skip("media_or_empty")
        else:
            kept.append(m)
    return kept, info


def _wa_time(match: re.Match, order: str) -> datetime | None:
    a, b, year, hour, minute = (int(match.group(i)) for i in range(1, 6))
    second = int(match.group(6) or 0)
    day, month = (a, b) if order == "dmy" else (b, a)
    year = year + 2000 if year < 100 else year
    meridiem = (match.group(7) or "").lower()
    if meridiem == "p" and hour < 12:
        hour += 12
    elif meridiem == "a" and hour == 12:
        hour = 0
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None


def _jsonl(path: Path, text: str, label: str) -> tuple[list[Message], ChatFileInfo]:
    info = ChatFileInfo(label, "jsonl")
    messages: list[Message] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            info.rejects.append({"file": label, "row": lineno, "reason": "invalid_json",
                                 "detail": f"invalid JSON ({exc.msg})"})
            continue
        problem = None
        if not isinstance(obj, dict):
            problem = f"a JSON {type(obj).__name__}, not an object"
        elif not isinstance(obj.get("text"), str) or not obj["text"].strip():
            problem = "field 'text': missing or empty"
        elif obj.get("role") is not None and str(obj["role"]).lower() not in ROLES | {"system": "system"}:
            problem = f"field 'role': {str(obj['role'])[:20]!r} is not user or assistant"
        elif obj.get("role") is None and not obj.get("author"):
            problem = "needs 'role' (user/assistant) or 'author'"
        if problem:
            info.rejects.append({"file": label, "row": lineno, "reason": "invalid_message", "detail": problem})
            continue
        role = str(obj["role"]).lower() if obj.get("role") is not None else None
        if role == "system":
            info.skip("system")
            continue
        message = Message(str(obj.get("dialogue_id", "")), str(obj.get("author") or ""), obj["text"],
                          _parse_time(obj.get("time")), lineno, ROLES.get(role) if role else None)
        messages.append(message)
    if len(info.rejects) > len(messages):
        first = info.rejects[0]
        raise UsageError(f"{path}:{first['row']}: {first['detail']}; {len(info.rejects)} of "
                         f"{len(info.rejects) + len(messages)} lines are broken (is this a chat JSONL file?)")
    return messages, info


def _parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        seconds = float(value)
        if seconds > 1e11:  # milliseconds (JavaScript exports)
            seconds /= 1000
        try:
            return datetime.fromtimestamp(seconds, tz=timezone.utc).replace(tzinfo=None)
        except (OverflowError, OSError, ValueError):
            return None
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed


def dialogues_of(messages: list[Message], file_label: str, chats: Any) -> tuple[list[Dialogue], dict[str, int]]:
    """Group one file's messages into dialogues of alternating turns (see the module docstring)."""
    gap = chats.gap_minutes * 60
    groups: list[list[Message]] = []
    for m in messages:
        last = groups[-1][-1] if groups else None
        new = last is None or m.chat != last.chat or (
            gap > 0 and m.time is not None and last.time is not None and (m.time - last.time).total_seconds() > gap)
        if new:
            groups.append([m])
        else:
            groups[-1].append(m)
    stats = {"leading_assistant_turns_dropped": 0, "merged_messages": 0, "dialogues_without_assistant": 0}
    dialogues = []
    for group in groups:
        turns: list[dict] = []
        for m in group:
            if turns and turns[-1]["role"] == m.role:
                turns[-1]["content"] += "\n" + m.text.strip()
                stats["merged_messages"] += 1
            else:
                turns.append({"role": m.role, "content": m.text.strip()})
        while turns and turns[0]["role"] == "assistant":
            turns.pop(0)
            stats["leading_assistant_turns_dropped"] += 1
        if not any(t["role"] == "assistant" for t in turns):
            stats["dialogues_without_assistant"] += 1
            continue
        if turns[-1]["role"] == "user":  # a question nobody answered is context for nothing
            turns.pop()
        dialogues.append(Dialogue(f"{file_label}#{len(dialogues) + 1}", file_label, group[0].line, turns))
    return dialogues, stats


def author_names(messages: list[Message]) -> list[str]:
    """Distinct author names (for replacing them in texts; never written anywhere)."""
    return sorted({m.author for m in messages if m.author})
