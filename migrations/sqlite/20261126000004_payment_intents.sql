-- Checkout is a saga: the order (PENDING), its stock and a PENDING charge are committed before
-- the payment provider is called, with no transaction open during the call. The provider's
-- card token stays on the pending charge until it is settled, so the reconciler can ask the
-- provider again with the same idempotency key; it is cleared once the outcome is known.
ALTER TABLE payments ADD COLUMN payment_token TEXT;
-- The reconciler's work list: pending charges, oldest first.
CREATE INDEX payments_pending_idx ON payments (created_at) WHERE status = 'PENDING';
