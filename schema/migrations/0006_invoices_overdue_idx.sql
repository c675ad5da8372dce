-- Tenant schema, version 6: the overdue invoices in id order, as the
-- sweep pages through them for their reminders (invoice.RemindersDue:
-- status 'overdue', id after the last page's, ORDER BY id, LIMIT). With
-- only (status, due_date) a page read every overdue invoice after its
-- key, computed each one's total and sorted them to keep a page, so a
-- sweep of N overdue invoices read N²/(2 × page) rows; or it read the
-- table in id order, every invoice of every status. Partial: the index
-- holds the overdue invoices only, which an app's writes of other
-- invoices do not touch.
CREATE INDEX invoices_overdue_id_idx ON invoices (id) WHERE status = 'overdue';
