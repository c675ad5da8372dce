-- Tenant schema, version 5: minor_units reads the currency code in the
-- "C" collation. upper() follows the collation, and a database whose
-- default collation is Turkish (tr-TR) upper-cases an ASCII "i" to "İ"
-- (U+0130): "isk" became "İSK", an unknown code with 2 minor units
-- instead of ISK's 0. In "C", upper() changes a-z only, on every
-- database; invoice.Load normalizes the code the same way. Stored
-- amounts are the app's and are left as they are.
CREATE OR REPLACE FUNCTION minor_units(currency text) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE upper(btrim(currency) COLLATE "C")
    WHEN 'BIF' THEN 0 WHEN 'CLP' THEN 0 WHEN 'DJF' THEN 0 WHEN 'GNF' THEN 0 WHEN 'ISK' THEN 0
    WHEN 'JPY' THEN 0 WHEN 'KMF' THEN 0 WHEN 'KRW' THEN 0 WHEN 'PYG' THEN 0 WHEN 'RWF' THEN 0
    WHEN 'UGX' THEN 0 WHEN 'UYI' THEN 0 WHEN 'VND' THEN 0 WHEN 'VUV' THEN 0 WHEN 'XAF' THEN 0
    WHEN 'XOF' THEN 0 WHEN 'XPF' THEN 0
    WHEN 'BHD' THEN 3 WHEN 'IQD' THEN 3 WHEN 'JOD' THEN 3 WHEN 'KWD' THEN 3 WHEN 'LYD' THEN 3
    WHEN 'OMR' THEN 3 WHEN 'TND' THEN 3
    WHEN 'CLF' THEN 4 WHEN 'UYW' THEN 4
    ELSE 2
END;
