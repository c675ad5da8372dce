"""The Celery + reportlab invoice worker the bench's python scenario runs
beside cmd/worker (integration/bench/s9_python.go).

Its one task does what invoice:pdf does for a first render, the way issue
14's Python worker did it: resolve the tenant in the catalog (cached per
process), then in one transaction pinned to the tenant's schema (BEGIN;
SET LOCAL search_path) load the invoice and its lines, render the PDF with
reportlab (the PDF standard fonts, or the TrueType fonts cmd/worker embeds
for text in any script), write the file atomically (temp file, fsync,
rename, fsync of the directory), record it in invoice_documents with its
SHA-256, and COMMIT. The task's result (Redis result backend) carries the
task's own start and finish times, which the bench measures by.

Configuration, from the environment:
  BENCH_BROKER_URL      Redis URL of broker and result backend
  BENCH_DATABASE_URL    PostgreSQL URL of the bench's core database
  BENCH_DOCUMENTS_DIR   where documents go: <dir>/<tenant id>/invoices/<id>.pdf
  BENCH_FONT_REGULAR    TrueType files of the "truetype" variant
  BENCH_FONT_BOLD
"""

import hashlib
import io
import os
import tempfile
import time
from decimal import ROUND_HALF_UP, Decimal

import psycopg2
from celery import Celery
from psycopg2 import sql
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

app = Celery("pdfworker", broker=os.environ["BENCH_BROKER_URL"], backend=os.environ["BENCH_BROKER_URL"])
# Celery's defaults (prefork pool; concurrency and prefetch set on the
# command line), except acks_late: a task is acknowledged after it ran, as
# asynq keeps a task active until its handler returned (at least once).
app.conf.update(task_acks_late=True, worker_hijack_root_logger=False)

FONTS = {
    "standard": ("Helvetica", "Helvetica-Bold"),
    "truetype": ("GoRegular", "GoBold"),
}

_conn = None  # this process's database connection
_tenants = {}  # tenant id -> (schema, name), as cmd/worker's in-process cache
_made_dirs = set()
_fonts_registered = False


def _db():
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg2.connect(os.environ["BENCH_DATABASE_URL"])
    return _conn


def _register_truetype():
    global _fonts_registered
    if not _fonts_registered:
        pdfmetrics.registerFont(TTFont("GoRegular", os.environ["BENCH_FONT_REGULAR"]))
        pdfmetrics.registerFont(TTFont("GoBold", os.environ["BENCH_FONT_BOLD"]))
        _fonts_registered = True


def _tenant(conn, tenant_id):
    t = _tenants.get(tenant_id)
    if t is None:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT schema_name, name FROM tenancy.tenants WHERE id = %s AND status = 'active'", (tenant_id,))
            row = cur.fetchone()
        if row is None:
            raise LookupError(f"tenant {tenant_id} not found or not active")
        t = _tenants[tenant_id] = row
    return t


def _money(d, currency):
    return f"{d:,.2f} {currency}"


def render(inv, lines, tenant_name, fonts):
    """Returns the PDF of an invoice: header, customer, one row per line,
    total, notes."""
    regular, bold = FONTS[fonts]
    if fonts == "truetype":
        _register_truetype()
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=A4)
    width, height = A4
    y = height - 60
    c.setFont(bold, 16)
    c.drawString(50, y, tenant_name)
    c.drawRightString(width - 50, y, f"Invoice {inv['number']}")
    y -= 30
    c.setFont(regular, 10)
    for text in [inv["name"], inv["company"], inv["email"], *inv["address"].split("\n")]:
        if text:
            c.drawString(50, y, text)
            y -= 14
    y -= 10
    c.drawString(50, y, f"Issued {inv['issued_at']:%Y-%m-%d}   Due {inv['due_date']:%Y-%m-%d}   Status {inv['status']}")
    y -= 28
    c.setFont(bold, 10)
    c.drawString(50, y, "Description")
    c.drawRightString(390, y, "Quantity")
    c.drawRightString(470, y, "Unit price")
    c.drawRightString(width - 50, y, "Amount")
    c.setFont(regular, 10)
    total = Decimal(0)
    for description, quantity, unit_price in lines:
        y -= 16
        amount = (quantity * unit_price).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        total += amount
        c.drawString(50, y, description)
        c.drawRightString(390, y, f"{quantity:f}")
        c.drawRightString(470, y, _money(unit_price, inv["currency"]))
        c.drawRightString(width - 50, y, _money(amount, inv["currency"]))
    y -= 24
    c.setFont(bold, 11)
    c.drawRightString(width - 50, y, f"Total {_money(total, inv['currency'])}")
    y -= 30
    c.setFont(regular, 9)
    c.drawString(50, y, inv["notes"])
    c.showPage()
    c.save()
    return out.getvalue()


def store(tenant_id, invoice_id, data):
    """Writes data atomically: temp file, fsync, rename, fsync of the
    directory. Returns the key."""
    key = f"invoices/{invoice_id}.pdf"
    directory = os.path.join(os.environ["BENCH_DOCUMENTS_DIR"], tenant_id, "invoices")
    if directory not in _made_dirs:
        os.makedirs(directory, exist_ok=True)
        _made_dirs.add(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(directory, f"{invoice_id}.pdf"))
    except BaseException:
        os.unlink(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return key


@app.task(name="invoice_pdf")
def invoice_pdf(tenant_id, invoice_id, fonts):
    started = time.time()
    conn = _db()
    schema, tenant_name = _tenant(conn, tenant_id)
    with conn, conn.cursor() as cur:  # BEGIN ... COMMIT (ROLLBACK on error)
        cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        cur.execute(
            """SELECT i.number, i.status, i.currency, i.issued_at, i.due_date, i.notes,
                      c.name, coalesce(c.company, ''), c.email, coalesce(c.address, '')
                 FROM invoices i JOIN customers c ON c.id = i.customer_id
                WHERE i.id = %s""",
            (invoice_id,),
        )
        row = cur.fetchone()
        if row is None:
            raise LookupError(f"invoice {invoice_id} not found in tenant {tenant_id}")
        inv = dict(zip(("number", "status", "currency", "issued_at", "due_date", "notes",
                        "name", "company", "email", "address"), row))
        cur.execute(
            "SELECT description, quantity, unit_price FROM line_items WHERE invoice_id = %s ORDER BY position, id",
            (invoice_id,),
        )
        lines = cur.fetchall()
        data = render(inv, lines, tenant_name, fonts)
        key = store(tenant_id, invoice_id, data)
        digest = hashlib.sha256(data).hexdigest()
        cur.execute(
            """INSERT INTO invoice_documents (invoice_id, storage_key, sha256, bytes, rendered_at, font_path)
               VALUES (%s, %s, %s, %s, now(), %s)
               ON CONFLICT (invoice_id) DO UPDATE
                  SET storage_key = EXCLUDED.storage_key, sha256 = EXCLUDED.sha256, bytes = EXCLUDED.bytes,
                      rendered_at = EXCLUDED.rendered_at, font_path = EXCLUDED.font_path""",
            (invoice_id, key, digest, len(data), "python-" + fonts),
        )
    return {"started": started, "finished": time.time(), "key": key, "sha256": digest, "bytes": len(data)}
