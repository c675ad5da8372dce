-- Tenant schema, version 4: customers.email is unique, as in the Invoicer
-- app. Rule for existing duplicates: no row is changed, merged or
-- deleted. A schema that holds customers sharing an email address stops
-- at version 3 (which the worker fully supports) with an error that
-- counts them and names no address (it lands in task errors); an
-- operator merges them (re-points their invoices to one customer) and
-- migrates again. See docs/architecture.md, "Tenant tables".
DO $$
DECLARE
    shared bigint;
BEGIN
    SELECT count(*) INTO shared
      FROM (SELECT 1 FROM customers GROUP BY email HAVING count(*) > 1) d;
    IF shared > 0 THEN
        RAISE EXCEPTION 'customers.email must be unique: % email addresses belong to more than one customer', shared
            USING ERRCODE = 'unique_violation',
                  HINT = 'merge the customers that share an address (re-point their invoices to one of them), then migrate again';
    END IF;
END
$$;

ALTER TABLE customers ADD CONSTRAINT customers_email_key UNIQUE (email);
