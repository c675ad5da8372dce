-- Tenant schema, version 2: look up a customer's invoices (and let
-- deleting a customer check its invoices) without a sequential scan.

CREATE INDEX invoices_customer_id_idx ON invoices (customer_id);

CREATE INDEX line_items_invoice_id_idx ON line_items (invoice_id, position);
