-- The currency of `added_price_amount`, so a currency change shows as a price change.
ALTER TABLE cart_items ADD COLUMN added_currency_code TEXT;
