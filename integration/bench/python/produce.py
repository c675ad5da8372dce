"""Enqueues invoice_pdf tasks with Celery's own client, one per line of
stdin ("<tenant id> <invoice id> <fonts>"), through one producer
connection, and prints each task's id on its own line."""

import sys

from pdfworker import app, invoice_pdf

with app.producer_or_acquire() as producer:
    for line in sys.stdin:
        tenant_id, invoice_id, fonts = line.split()
        result = invoice_pdf.apply_async((tenant_id, int(invoice_id), fonts), producer=producer)
        print(result.id)
