-- `inventory.reserved` counts the units held by placed or paid orders (not yet fulfilled,
-- cancelled or refunded); checkout and status changes keep it from now on. Fill it in once.
UPDATE inventory SET reserved = (
    SELECT COALESCE(SUM(oi.quantity), 0) FROM order_items oi JOIN orders o ON o.id = oi.order_id
    WHERE oi.product_id = inventory.product_id AND o.status IN ('PENDING', 'PAID')
);
