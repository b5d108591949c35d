-- The unit price a product had when it was put in the cart, so the cart can show a price change
-- before checkout (NULL for lines added before this column existed).
ALTER TABLE cart_items ADD COLUMN added_price_amount BIGINT;
