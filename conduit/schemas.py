"""Request validation with marshmallow.

Every body is `{"<envelope>": {...}}`; `load_body()` checks the envelope and the fields
and raises 422 with one message per field. Strings are rejected when they hold control
characters (conduit/validation.py); only multi-line fields may hold line breaks and tabs.
Patterns match the whole value, never a prefix.
"""

from __future__ import annotations

import re
import unicodedata

from flask import request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from .errors import unprocessable
from .identity import mixes_scripts
from .validation import has_control_characters

# Usernames appear in URLs (/profiles/<username>): letters, digits, _ . and - only.
USERNAME_PATTERN = re.compile(r"[\w.-]+")
MAX_TAGS = 20


class Text(fields.String):
    """A string without control characters (line breaks and tabs too, unless `multiline`);
    leading and trailing whitespace is kept as sent."""

    def __init__(self, *args, multiline: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.multiline = multiline

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if has_control_characters(text, multiline=self.multiline):
            raise ValidationError("must not contain control characters")
        return text


def full_match(pattern: re.Pattern[str], error: str):
    """A validator for the whole value (marshmallow's Regexp matches a prefix only)."""

    def check(value: str) -> None:
        if pattern.fullmatch(value) is None:
            raise ValidationError(error)

    return check


def not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("can't be blank")


def password_rules(value: str) -> None:
    if len(value) < 8:
        raise ValidationError("must be at least 8 characters")
    # bcrypt only reads the first 72 bytes; refuse rather than silently truncate.
    if len(value.encode()) > 72:
        raise ValidationError("must be at most 72 bytes")


def nfkc_stable(value: str) -> None:
    """Refuse compatibility characters (full-width letters, the Kelvin sign U+212A): under
    NFKC they are another username's letters. Refused, not rewritten, so a user never
    gets a name other than the one typed."""
    if unicodedata.normalize("NFKC", value) != value:
        raise ValidationError("must not contain full-width or compatibility characters")


def single_script(value: str) -> None:
    """Refuse Latin mixed with Cyrillic or Greek ("j\u0430ke" with U+0430 CYRILLIC SMALL
    LETTER A) and the like: UTS #39's highly restrictive level (conduit/identity.py).
    Names in one script, any script, pass."""
    if mixes_scripts(value):
        raise ValidationError("must not mix letters of different scripts")


def username_field(**kwargs) -> Text:
    return Text(
        validate=[
            validate.Length(min=1, max=64),
            full_match(USERNAME_PATTERN, "may only contain letters, digits, _ . and -"),
            nfkc_stable,
            single_script,
        ],
        **kwargs,
    )


# A profile image is shown by every client as <img src>: only web URLs, never
# javascript:, data: or file: (issue 26). "" clears it, as the reference frontend sends.
_WEB_URL = validate.URL(
    schemes={"http", "https"}, require_tld=False, error="must be an http or https URL"
)


def image_url(value: str) -> None:
    if value != "":
        _WEB_URL(value)


def email_field(**kwargs) -> Text:
    return Text(validate=[validate.Length(max=254), validate.Email()], **kwargs)


class StrictSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # clients send whole objects back; ignore fields we don't own


class RegisterSchema(StrictSchema):
    username = username_field(required=True)
    email = email_field(required=True)
    password = Text(required=True, validate=password_rules)


class LoginSchema(StrictSchema):
    email = Text(required=True, validate=validate.Length(min=1, max=254))
    password = Text(required=True, validate=validate.Length(min=1, max=1024))


class UserUpdateSchema(StrictSchema):
    username = username_field()
    email = email_field()
    password = Text(validate=password_rules)
    bio = Text(allow_none=True, multiline=True, validate=validate.Length(max=10_000))
    image = Text(allow_none=True, validate=[validate.Length(max=2048), image_url])

    @validates_schema
    def at_least_one(self, data, **kwargs):
        if not data:
            raise ValidationError("at least one field is required")


class TagList(fields.List):
    """Tags, with blank ones left out before validation.

    The reference React/Redux client adds its tag input's text on every Enter, an empty
    one included, and has no way to remove it: a tag that is only whitespace carries no
    meaning (tags are trimmed: dedupe() below), so it is dropped, not refused.
    """

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, list):
            value = [tag for tag in value if not _blank(tag)]
        return super()._deserialize(value, attr, data, **kwargs)


def _blank(tag) -> bool:
    # Only whitespace that is not a control character: "\t" or "\x85" are still refused.
    return isinstance(tag, str) and not tag.strip() and not has_control_characters(tag)


def tag_list_field(**kwargs) -> TagList:
    return TagList(
        Text(validate=validate.Length(max=64)),
        validate=validate.Length(max=MAX_TAGS),
        **kwargs,
    )


class ArticleCreateSchema(StrictSchema):
    title = Text(required=True, validate=[validate.Length(max=255), not_blank])
    description = Text(
        required=True, multiline=True, validate=[validate.Length(max=1000), not_blank]
    )
    body = Text(required=True, multiline=True, validate=not_blank)
    tagList = tag_list_field(load_default=list)


class ArticleUpdateSchema(StrictSchema):
    title = Text(validate=[validate.Length(max=255), not_blank])
    description = Text(multiline=True, validate=[validate.Length(max=1000), not_blank])
    body = Text(multiline=True, validate=not_blank)
    tagList = tag_list_field()

    @validates_schema
    def at_least_one(self, data, **kwargs):
        if not data:
            raise ValidationError("at least one field is required")


class CommentSchema(StrictSchema):
    body = Text(required=True, multiline=True, validate=[validate.Length(max=10_000), not_blank])


def load_body(envelope: str, schema: Schema) -> dict:
    """Parse the JSON body, check its envelope and validate the fields inside it."""
    if not request.is_json:
        raise unprocessable("body", "expected a JSON body (Content-Type: application/json)")
    data = request.get_json()  # malformed JSON -> 400 -> rendered as 422
    if not isinstance(data, dict) or envelope not in data:
        raise unprocessable(envelope, f'expected a JSON object with a "{envelope}" object')
    payload = data[envelope]
    if not isinstance(payload, dict):
        raise unprocessable(envelope, "must be a JSON object")
    return schema.load(payload)


def dedupe(tags: list[str]) -> list[str]:
    """Tags without surrounding blanks, first occurrence kept, order kept."""
    seen: dict[str, None] = {}
    for tag in tags:
        seen.setdefault(tag.strip(), None)
    return list(seen)
