"""Imported files: reading them as text, their limits, and the background import of large ones.

Every upload is read as text the same way (`text_decode`, `upload_store`): a byte-order mark
says UTF-8, UTF-16 or UTF-32; without one the file is UTF-8 if it decodes as such, else
Windows-1252 (what Excel's plain "CSV" writes on Western Windows). Anything else, or a binary
file, is refused with a sentence saying what to do. Files above `TKERP_IMPORT_MAX_BYTES` or
`TKERP_IMPORT_MAX_ROWS` are refused outright.

A CSV/TSV file of more than `TKERP_IMPORT_BACKGROUND_ROWS` rows is imported by a background job
(`tkerp.jobs`) instead of in the web request: the upload is stored, transcoded to UTF-8, under
MEDIA_ROOT/imports/ (never served), and `import_job_run` reads it row by row in chunks:

1. **check** every row (parse, natural keys, foreign keys, model validation, a key at most once
   per file, other unique constraints), reading the database once per chunk and writing
   nothing; every bad row is recorded with its column. Progress is committed per chunk.
2. if anything was wrong, the job fails with the full report and nothing was written;
3. else **write** in one transaction what the check prepared (kept on disk chunk by chunk, not
   parsed again), comparing with the rows as they are now: new rows by `bulk_create`, changed
   ones by `bulk_update`, unchanged ones not at all; the job is marked finished in the same
   transaction, so a retry after a crash starts over cleanly and one after the commit is a
   no-op. A row changed meanwhile in a way that breaks a constraint (a SKU deleted, the same
   code created by another import) rolls everything back and fails the job with a sentence.

Checking first, then writing in one transaction (rather than writing into a staging table and
swapping it in) because imports update rows that the rest of the schema references (SKUs are on
order lines, listings, stock levels): their identities must stay, so there is nothing to swap,
only rows to upsert; and a separate, read-only check pass can report progress and every error
without holding a long write transaction open.

Resources that write through their own domain code (stock counts go through `stock_count`,
orders through the order planner) import row by row inside the job, with the same
all-or-nothing rule; `TenantResource.bulk_import_supported()` tells which is which.
"""

from __future__ import annotations

import codecs
import csv
import logging
import pickle
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import tablib
from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from import_export.formats import base_formats
from import_export.tmp_storages import TempFolderStorage
from import_export.widgets import ForeignKeyWidget, ManyToManyWidget

from tkerp.bulk import rows_copy
from tkerp.jobs import JobFailed, JobProgress, job_create
from tkerp.models import Job
from tkerp.resources import (
    AmountWidget,
    TenantResource,
    WholeNumberWidget,
    YesNoWidget,
    key_columns_missing,
    restore_formula,
)

logger = logging.getLogger(__name__)

CHUNK_ROWS = 2000
IMPORT_DIR = "imports"

NOT_TEXT = (
    "The file is not text in an encoding tkerp reads (UTF-8, UTF-16 or Windows-1252), or it is "
    "a spreadsheet saved under another format's name. In Excel, use File, Save As, “CSV UTF-8 "
    "(Comma delimited)” and upload that file."
)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class ImportFileRefused(ValueError):
    """The file as a whole cannot be imported; the message tells the person what to do."""


@dataclass(frozen=True)
class ImportLimits:
    """The documented limits of an import (settings TKERP_IMPORT_*, see .env.example)."""

    max_bytes: int
    max_rows: int
    background_rows: int
    spreadsheet_max_bytes: int

    def for_display(self) -> dict:
        return {
            "max_rows": f"{self.max_rows:,}",
            "max_megabytes": _megabytes(self.max_bytes),
            "background_rows": f"{self.background_rows:,}",
            "spreadsheet_megabytes": _megabytes(self.spreadsheet_max_bytes),
        }


def import_limits() -> ImportLimits:
    return ImportLimits(
        max_bytes=settings.TKERP_IMPORT_MAX_BYTES,
        max_rows=settings.TKERP_IMPORT_MAX_ROWS,
        background_rows=settings.TKERP_IMPORT_BACKGROUND_ROWS,
        spreadsheet_max_bytes=settings.TKERP_IMPORT_SPREADSHEET_MAX_BYTES,
    )


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f}".removesuffix(".0")


def _size(size: int) -> str:
    if size >= 1_000_000:
        return f"{_megabytes(size)} MB"
    return f"{max(1, round(size / 1000))} KB"


def upload_size_check(*, size: int, streamed: bool) -> None:
    """Refuse a file above the byte limit (`streamed`: CSV/TSV, which may go to the background;
    other formats are read whole in the request and have a smaller limit)."""
    limits = import_limits()
    if size > limits.max_bytes:
        raise ImportFileRefused(
            f"The file is {_size(size)}; an import takes at most {_size(limits.max_bytes)}. "
            "Split it into smaller files."
        )
    if not streamed and size > limits.spreadsheet_max_bytes:
        raise ImportFileRefused(
            f"The file is {_size(size)}; spreadsheets and other non-CSV formats are read at up "
            f"to {_size(limits.spreadsheet_max_bytes)}. Save it as “CSV UTF-8” "
            "and upload that: large CSV files are imported in the background."
        )


# --- reading text --------------------------------------------------------------------------------


def _encodings_to_try(head: bytes) -> list[str]:
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return [encoding]
    return ["utf-8", "cp1252"]


def text_decode(data: bytes) -> str:
    """The text of an uploaded file; see the module docstring. Raises ImportFileRefused."""
    for encoding in _encodings_to_try(data[:4]):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" in text:
            break  # UTF-16 without its mark, or a binary file: not text we can trust
        return text.removeprefix("\ufeff")
    raise ImportFileRefused(NOT_TEXT)


class DecodingTempFolderStorage(TempFolderStorage):
    """import-export's temporary file of an upload, read back with `text_decode` rather than
    the one fixed encoding the library assumes."""

    def read(self):
        if "b" in self.read_mode:
            return super().read()
        with open(self.get_full_path(), "rb") as file:
            return text_decode(file.read())


@dataclass
class StoredUpload:
    """An upload transcoded to UTF-8 under MEDIA_ROOT, and its number of data rows."""

    name: str  # relative to MEDIA_ROOT
    rows: int
    encoding: str
    delimiter: str

    @property
    def path(self) -> Path:
        return Path(settings.MEDIA_ROOT) / self.name

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def streamed_delimiter(input_format) -> str | None:
    """The delimiter of a format the background import streams (CSV, TSV), else None."""
    if isinstance(input_format, base_formats.TSV):
        return "\t"
    if isinstance(input_format, base_formats.CSV):
        return ","
    return None


def upload_store(*, upload, tenant, delimiter: str) -> StoredUpload:
    """Store `upload` as UTF-8 text for `tenant` and count its rows, without holding it in
    memory; refuses (ImportFileRefused) what is too large, not text, or not CSV."""
    upload_size_check(size=upload.size, streamed=True)
    name = f"{IMPORT_DIR}/tenant-{tenant.pk}/{uuid4().hex}.csv"
    path = Path(settings.MEDIA_ROOT) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    upload.seek(0)
    head = upload.read(4)
    for encoding in _encodings_to_try(head):
        try:
            _transcode(upload, path, encoding)
        except (UnicodeDecodeError, _NotText):
            continue
        break
    else:
        path.unlink(missing_ok=True)
        raise ImportFileRefused(NOT_TEXT)
    stored = StoredUpload(name=name, rows=0, encoding=encoding, delimiter=delimiter)
    try:
        stored.rows = _rows_count(path, delimiter)
    except ImportFileRefused:
        stored.remove()
        raise
    return stored


class _NotText(Exception):
    pass


def _transcode(upload, path: Path, encoding: str) -> None:
    decoder = codecs.getincrementaldecoder(encoding)()
    with open(path, "w", encoding="utf-8", newline="") as out:
        for chunk in upload.chunks():
            text = decoder.decode(chunk)
            if "\x00" in text:
                raise _NotText
            out.write(text)
        out.write(decoder.decode(b"", final=True))


def _csv_reader(file, delimiter: str):
    return csv.reader(file, delimiter=delimiter)


def _rows_count(path: Path, delimiter: str) -> int:
    limit = import_limits().max_rows
    count = 0
    with open(path, encoding="utf-8", newline="") as file:
        reader = _csv_reader(file, delimiter)
        try:
            header = next(reader, None)
            if not header or not any(cell.strip() for cell in header):
                raise ImportFileRefused("The file is empty: its first line must name the columns.")
            for row in reader:
                if any(cell.strip() for cell in row):
                    count += 1
                    if count > limit:
                        raise ImportFileRefused(
                            f"The file has more than {limit:,} rows; an import takes at most "
                            f"{limit:,}. Split it into smaller files."
                        )
        except csv.Error as error:
            raise ImportFileRefused(
                f"The file is not valid CSV near line {reader.line_num}: {error}."
            ) from None
    return count


def _data_rows(path: Path, delimiter: str) -> tuple[list[str], Iterator[tuple[int, dict]]]:
    """The header and an iterator of (row number, {column: cell}) over non-blank rows.

    Rows are numbered like the import preview: the first line after the header is row 1.
    """
    file = open(path, encoding="utf-8", newline="")  # noqa: SIM115 - closed by the iterator
    reader = _csv_reader(file, delimiter)
    headers = [cell.strip() for cell in next(reader, [])]

    def rows():
        try:
            for number, cells in enumerate(reader, 1):
                if not any(cell.strip() for cell in cells):
                    continue
                cells += [""] * (len(headers) - len(cells))  # a short (ragged) line
                yield number, dict(zip(headers, cells, strict=False))
        finally:
            file.close()

    return headers, rows()


def _chunks(rows: Iterator, size: int = CHUNK_ROWS) -> Iterator[list]:
    chunk = []
    for item in rows:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --- the bulk import ----------------------------------------------------------------------------

RowError = tuple[int | None, str, str]


class BulkImport:
    """Checks and writes a resource's rows chunk by chunk; see the module docstring.

    Uses the resource's own fields and widgets (so a cell means the same as in the preview),
    resolves foreign keys by natural key once per distinct value, and reads the existing rows
    of a chunk in one query.
    """

    def __init__(self, *, resource: TenantResource, headers: list[str]):
        self.resource = resource
        self.tenant = resource.require_tenant()
        self.model = resource._meta.model
        meta = self.model._meta
        self.key_fields = [resource.fields[name] for name in resource.get_import_id_fields()]
        missing = key_columns_missing(resource, headers)
        if missing is not None:
            raise ImportFileRefused(str(missing))
        self.fields = [
            field
            for field in resource.get_import_fields()
            if field.attribute
            and not field.readonly
            and field.column_name in headers
            and "__" not in field.attribute
            and not isinstance(field.widget, ManyToManyWidget)
        ]
        self.model_fields = {field: meta.get_field(field.attribute) for field in self.fields}
        self.column_of = {mf.name: field.column_name for field, mf in self.model_fields.items()}
        self.key_attnames = [meta.get_field(f.attribute).attname for f in self.key_fields]
        self.imported_names = {mf.name for mf in self.model_fields.values()}
        # Validated by `clean_fields`: everything imported except foreign keys, which are
        # resolved here among the tenant's rows (Django's check would query once per row).
        # Columns read by the strict widgets are validated already (type, sign, range, digits).
        strict = {
            mf.name
            for field, mf in self.model_fields.items()
            if isinstance(field.widget, WholeNumberWidget | AmountWidget | YesNoWidget)
        }
        self.clean_exclude = [
            f.name
            for f in meta.concrete_fields
            if f.name not in self.imported_names or f.is_relation or f.name in strict
        ]
        self.check_constraints = [
            c for c in meta.constraints if isinstance(c, models.CheckConstraint)
        ]
        self.unique_sets = self._secondary_unique_sets()
        self.auto_now = [f.attname for f in meta.concrete_fields if getattr(f, "auto_now", False)]
        self.reset()

    def reset(self) -> None:
        self.keys_seen: dict[tuple, int] = {}
        self.unique_seen: dict[tuple[str, ...], dict[tuple, int]] = {
            attnames: {} for attnames in self.unique_sets
        }
        self.fk_cache: dict[tuple, int | str | None] = {}
        self.counts = Counter(new=0, updated=0, unchanged=0)

    def _secondary_unique_sets(self) -> list[tuple[str, ...]]:
        """Attnames of each unique constraint other than the key, within the tenant, whose
        fields all come from the file (others cannot be changed by it)."""
        meta = self.model._meta
        sets = []
        for constraint in meta.constraints:
            if not isinstance(constraint, models.UniqueConstraint) or not constraint.fields:
                continue
            names = [name for name in constraint.fields if name != "tenant"]
            if not names or not set(names) <= self.imported_names:
                continue
            attnames = tuple(meta.get_field(name).attname for name in names)
            if sorted(attnames) != sorted(self.key_attnames):
                sets.append(attnames)
        return sets

    # -- one chunk

    def check(self, chunk: list[tuple[int, dict]]) -> tuple[list[RowError], list]:
        """Check a chunk of (row number, cells); returns its errors and, for the rows that
        passed, (row number, {attname: value}) ready for `write`."""
        errors: list[RowError] = []
        self._prefetch_foreign_keys(chunk)
        parsed = []
        for number, row in chunk:
            row = {column: restore_formula(value) for column, value in row.items()}
            values, row_errors = self._parse(number, row)
            if row_errors:
                # Still check the row's other columns, so that one pass names them all.
                unparsed = {column for _, column, _ in row_errors}
                partial = self.model(tenant_id=self.tenant.pk, **values)
                row_errors += self._validate(number, partial, skip_columns=unparsed)
            errors += row_errors
            parsed.append((number, values, bool(row_errors)))
        existing = self._existing([values for _, values, bad in parsed if not bad])
        checked, prepared = [], []
        for number, values, bad in parsed:
            if bad:
                continue
            instance = existing.get(tuple(values[name] for name in self.key_attnames))
            if instance is None:
                instance = self.model(tenant_id=self.tenant.pk, **values)
            else:
                for attname, value in values.items():
                    setattr(instance, attname, value)
            row_errors = self._validate(number, instance)
            if row_errors:
                errors += row_errors
                continue
            checked.append((number, instance))
            prepared.append((number, values))
        errors += self._unique_conflicts(checked)
        return errors, prepared

    def write(self, prepared: list[tuple[int, dict]]) -> None:
        """Write checked rows: new ones in bulk, changed ones in bulk, unchanged ones not at
        all. Existing rows are read again, as they are now, inside the writing transaction; a
        conflict with a concurrent change fails at the database's unique constraints."""
        current = self._current_values([values for _, values in prepared])
        to_create, to_update, changed_fields = [], [], set()
        for _, values in prepared:
            found = current.get(tuple(values[name] for name in self.key_attnames))
            if found is None:
                to_create.append(self.model(tenant_id=self.tenant.pk, **values))
                continue
            pk, stored = found
            changed = [name for name, value in values.items() if stored[name] != value]
            if not changed:
                self.counts["unchanged"] += 1
                continue
            # Every column of the file is set; `bulk_update` writes the changed ones.
            to_update.append(self.model(pk=pk, tenant_id=self.tenant.pk, **values))
            changed_fields.update(changed)
        self._copy_in(to_create)
        if to_update:
            now = timezone.now()
            for instance in to_update:
                for attname in self.auto_now:
                    setattr(instance, attname, now)
            self.model._base_manager.bulk_update(
                to_update, fields=sorted(changed_fields | set(self.auto_now)), batch_size=500
            )
        self.counts["new"] += len(to_create)
        self.counts["updated"] += len(to_update)

    def _copy_in(self, instances: list) -> None:
        """Insert new rows with PostgreSQL's COPY (`tkerp.bulk.rows_copy`): the bulk path's hot
        spot, where an INSERT compiled by the ORM spends most of its time preparing each value
        in Python."""
        rows_copy(self.model, instances)

    def _parse(self, number: int, row: dict) -> tuple[dict, list[RowError]]:
        values, errors = {}, []
        for field, model_field in self.model_fields.items():
            column = field.column_name
            try:
                if isinstance(field.widget, ForeignKeyWidget):
                    value = self._foreign_key(field, row)
                else:
                    value = field.clean(row)
            except (ValueError, ArithmeticError) as error:
                message = str(error) if isinstance(error, ValueError) else "is not a number."
                errors.append((number, column, message))
                continue
            values[model_field.attname] = value
        if errors:
            return values, errors
        key = tuple(values.get(name) for name in self.key_attnames)
        if any(part in (None, "") for part in key):
            return values, errors  # model validation names the missing key column
        first = self.keys_seen.setdefault(key, number)
        if first != number:
            named = ", ".join(
                f"{f.column_name} “{str(row.get(f.column_name, '')).strip()}”"
                for f in self.key_fields
            )
            errors.append(
                (
                    number,
                    self.key_fields[0].column_name,
                    f"{named} is already on row {first} of this file; each may appear once per "
                    "file.",
                )
            )
        return values, errors

    def _foreign_key(self, field, row):
        widget = field.widget
        raw = row.get(field.column_name)
        value = raw.strip() if isinstance(raw, str) else raw
        if value in (None, ""):
            return None
        if _simple_lookup(widget):
            cache_key = (field.column_name, value)
        else:
            lookup = widget.get_lookup_kwargs(value, row=row)
            cache_key = (field.column_name, *sorted(lookup.items()))
        if cache_key not in self.fk_cache:
            try:
                self.fk_cache[cache_key] = widget.clean(value, row=row).pk
            except ValueError as error:
                self.fk_cache[cache_key] = str(error)
        found = self.fk_cache[cache_key]
        if found is None:
            found = self.fk_cache[cache_key] = _not_found(widget, value, row)
        if isinstance(found, str):
            raise ValueError(found)
        return found

    def _prefetch_foreign_keys(self, chunk) -> None:
        for field in self.fields:
            widget = field.widget
            if not isinstance(widget, ForeignKeyWidget) or not _simple_lookup(widget):
                continue
            column = field.column_name
            wanted = set()
            for _, row in chunk:
                value = row.get(column)
                value = restore_formula(value).strip() if isinstance(value, str) else value
                if value not in (None, "") and (column, value) not in self.fk_cache:
                    wanted.add(value)
            if not wanted:
                continue
            found = dict(
                widget.model.objects.filter(
                    tenant=self.tenant, **{f"{widget.field}__in": wanted}
                ).values_list(widget.field, "pk")
            )
            for value in wanted:
                self.fk_cache[(column, value)] = found.get(value)

    def _existing_queryset(self, rows: list[dict]):
        filters = {
            f"{attname}__in": {values[attname] for values in rows} for attname in self.key_attnames
        }
        return self.model.objects.filter(tenant=self.tenant, **filters)

    def _existing(self, rows: list[dict]) -> dict[tuple, models.Model]:
        """The stored rows the chunk names, by key: whole rows where a check constraint may
        involve columns the file leaves out, else just their ids (cheaper to read)."""
        if not rows:
            return {}
        queryset = self._existing_queryset(rows)
        if self.check_constraints:
            return {
                tuple(getattr(obj, name) for name in self.key_attnames): obj for obj in queryset
            }
        existing = {}
        for pk, *key in queryset.values_list("pk", *self.key_attnames):
            existing[tuple(key)] = self.model(pk=pk, tenant_id=self.tenant.pk)
        return existing

    def _current_values(self, rows: list[dict]) -> dict[tuple, tuple[int, dict]]:
        """(id, {attname: stored value}) of the stored rows the chunk names, by key."""
        if not rows:
            return {}
        attnames = list(rows[0])
        current = {}
        for pk, *stored in self._existing_queryset(rows).values_list("pk", *attnames):
            values = dict(zip(attnames, stored, strict=True))
            current[tuple(values[name] for name in self.key_attnames)] = (pk, values)
        return current

    def _validate(self, number: int, instance, skip_columns=frozenset()) -> list[RowError]:
        skip = {name for name, column in self.column_of.items() if column in skip_columns}
        errors: dict = {}
        try:
            instance.clean_fields(exclude=[*self.clean_exclude, *skip])
        except ValidationError as error:
            errors = error.update_error_dict(errors)
        for field in self.model_fields.values():
            if field.name in skip:
                continue
            if field.is_relation and getattr(instance, field.attname) is None and not field.null:
                errors.setdefault(field.name, []).append(
                    ValidationError("is blank; it is required.")
                )
        if not errors and not skip:
            for constraint in self.check_constraints:
                try:
                    constraint.validate(self.model, instance)
                except ValidationError as error:
                    errors = error.update_error_dict(errors)
        return [
            (number, self.column_of.get(name, "" if name == NON_FIELD_ERRORS else name), message)
            for name, messages in errors.items()
            for message in ValidationError(messages).messages
        ]

    def _unique_conflicts(self, checked: list[tuple[int, models.Model]]) -> list[RowError]:
        """Other unique constraints (a SKU's barcode...): once per file, and not taken by a row
        this file does not name. Blank values are exempt (the constraints' conditions)."""
        errors = []
        for attnames in self.unique_sets:
            seen = self.unique_seen[attnames]
            mine = {}
            for number, instance in checked:
                value = tuple(getattr(instance, name) for name in attnames)
                if any(part in (None, "") for part in value):
                    continue
                first = seen.setdefault(value, number)
                if first != number:
                    errors.append((number, self._column(attnames), self._taken(value, first)))
                    continue
                mine[value] = (number, instance)
            if not mine:
                continue
            filters = {
                f"{name}__in": {value[i] for value in mine} for i, name in enumerate(attnames)
            }
            taken = self.model.objects.filter(tenant=self.tenant, **filters).values_list(
                "pk", *attnames
            )
            for pk, *value in taken:
                number, instance = mine.get(tuple(value), (None, None))
                if instance is not None and instance.pk != pk:
                    errors.append((number, self._column(attnames), self._taken(value, None)))
        return errors

    def _column(self, attnames) -> str:
        meta = self.model._meta
        name = next(f.name for f in meta.concrete_fields if f.attname == attnames[-1])
        return self.column_of.get(name, name)

    def _taken(self, value, first_row: int | None) -> str:
        shown = ", ".join(f"“{part}”" for part in value)
        if first_row is not None:
            return f"{shown} is already on row {first_row} of this file; it must be unique."
        return f"{shown} is already used by another {self.model._meta.verbose_name}."


def _simple_lookup(widget) -> bool:
    return type(widget).get_lookup_kwargs is ForeignKeyWidget.get_lookup_kwargs


def _not_found(widget, value, row) -> str:
    not_found = getattr(widget, "not_found_message", None)
    if not_found is not None:
        return not_found(value, row)
    return f"No {widget.model._meta.verbose_name} “{value}”."


# --- the job -------------------------------------------------------------------------------------


def import_job_start(
    *, tenant, user, resource_class: type[TenantResource], stored: StoredUpload, file_name: str
) -> Job:
    """Queue the background import of a stored upload; the job page follows it."""
    return job_create(
        tenant=tenant,
        kind="import",
        title=f"Import of {file_name} ({resource_class._meta.model._meta.verbose_name_plural})",
        user=user,
        params={
            "resource": f"{resource_class.__module__}.{resource_class.__qualname__}",
            "file": stored.name,
            "file_name": file_name,
            "delimiter": stored.delimiter,
            "rows": stored.rows,
            "user_id": getattr(user, "pk", None),
        },
    )


def import_job_run(*, job: Job, progress: JobProgress) -> None:
    """The handler of "import" jobs (see the module docstring)."""
    params = job.params
    resource_class = import_string(params["resource"])
    if not (isinstance(resource_class, type) and issubclass(resource_class, TenantResource)):
        raise JobFailed("This import cannot run: its kind of data is unknown.")
    resource = resource_class(tenant=job.tenant)
    path = Path(settings.MEDIA_ROOT) / params["file"]
    if not path.is_file():
        raise JobFailed("The uploaded file is no longer stored; upload it again.")
    try:
        if resource_class.bulk_import_supported():
            _run_bulk(job=job, progress=progress, resource=resource, path=path)
        else:
            _run_row_by_row(job=job, progress=progress, resource=resource, path=path)
    except ImportFileRefused as refused:
        progress.errors_add([(None, "", str(refused))])
        raise JobFailed(str(refused)) from None
    finally:
        if job.is_finished:
            path.unlink(missing_ok=True)


def _run_bulk(*, job: Job, progress: JobProgress, resource, path: Path) -> None:
    delimiter = job.params.get("delimiter", ",")
    total = job.params.get("rows", 0)
    headers, rows = _data_rows(path, delimiter)
    bulk = BulkImport(resource=resource, headers=headers)
    progress.start(total=total, phase="Checking every row")
    bad_rows, done = set(), 0
    # What the check prepared, chunk by chunk, so that the write pass neither keeps the file
    # in memory nor parses it again.
    checked_path = path.with_suffix(".checked")
    try:
        with open(checked_path, "wb") as checked:
            for chunk in _chunks(rows):
                errors, prepared = bulk.check(chunk)
                progress.errors_add(errors)
                bad_rows.update(number for number, _, _ in errors)
                if not bad_rows:
                    pickle.dump(prepared, checked, protocol=pickle.HIGHEST_PROTOCOL)
                done += len(chunk)
                progress.advance(done=done)
        if bad_rows:
            progress.fail(
                message=f"{len(bad_rows):,} of {done:,} rows have errors; nothing was imported. "
                "Correct them and upload the file again.",
                result={"rows": done, "invalid": len(bad_rows)},
            )
            return
        progress.start(total=total, phase="Writing")
        try:
            with transaction.atomic(), open(checked_path, "rb") as checked:
                while True:
                    try:
                        prepared = pickle.load(checked)
                    except EOFError:
                        break
                    bulk.write(prepared)
                counts = dict(bulk.counts)
                progress.advance(done=total)
                progress.succeed(message=_summary(counts, done), result={"rows": done, **counts})
        except IntegrityError:
            logger.info("import job %s: rows changed meanwhile", job.pk, exc_info=True)
            raise JobFailed(
                "Rows this file names were changed or removed while it was being imported "
                "(by another import or an edit); nothing was imported. Upload the file again."
            ) from None
    finally:
        checked_path.unlink(missing_ok=True)


def _run_row_by_row(*, job: Job, progress: JobProgress, resource, path: Path) -> None:
    params = job.params
    total = params.get("rows", 0)
    progress.start(total=total, phase=f"Importing {total:,} rows")
    with open(path, encoding="utf-8", newline="") as file:
        dataset = tablib.Dataset().load(
            file.read(), format="tsv" if params.get("delimiter") == "\t" else "csv"
        )
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(pk=params.get("user_id")).first()
    with transaction.atomic():
        result = resource.import_data(
            dataset, dry_run=False, use_transactions=True, user=user, file_name=params["file_name"]
        )
        errors = _result_errors(result)
        if errors:
            transaction.set_rollback(True)
        else:
            counts = {
                "new": result.totals["new"],
                "updated": result.totals["update"],
                "unchanged": result.totals["skip"],
            }
            progress.advance(done=total)
            progress.succeed(message=_summary(counts, len(dataset)), result=counts)
    if errors:
        progress.errors_add(errors)
        rows = len({number for number, _, _ in errors if number is not None})
        progress.fail(
            message=f"{rows:,} rows have errors; nothing was imported. Correct them and upload "
            "the file again."
        )


def _result_errors(result) -> list[RowError]:
    errors: list[RowError] = [(None, "", str(error.error)) for error in result.base_errors]
    for row in result.invalid_rows:
        for field, messages in row.error_dict.items():
            column = "" if field == NON_FIELD_ERRORS else field
            errors += [(row.number, column, message) for message in messages]
    for number, row_errors in result.row_errors():
        errors += [(number, "", str(error.error)) for error in row_errors]
    return errors


def _summary(counts: dict, rows: int) -> str:
    return (
        f"Imported {rows:,} rows: {counts.get('new', 0):,} new, {counts.get('updated', 0):,} "
        f"changed, {counts.get('unchanged', 0):,} unchanged."
    )
