-- The whole SecureCart data model for the embedded SQLite backend; it mirrors
-- migrations/postgres. Timestamps are RFC 3339 text in UTC; ids are rowid aliases.

CREATE TABLE vendors (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    slug          TEXT NOT NULL UNIQUE,
    owner_subject TEXT UNIQUE,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE products (
    id            INTEGER PRIMARY KEY,
    vendor_id     INTEGER NOT NULL REFERENCES vendors (id),
    sku           TEXT NOT NULL CONSTRAINT products_sku_key UNIQUE,
    name          TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description   TEXT NOT NULL DEFAULT '',
    price_amount  INTEGER NOT NULL CHECK (price_amount >= 0),
    currency_code TEXT NOT NULL CHECK (length(currency_code) = 3),
    status        TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'ARCHIVED')),
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX products_vendor_idx ON products (vendor_id, id);
CREATE INDEX products_price_idx ON products (price_amount, id);
CREATE INDEX products_name_idx ON products (name, id);

CREATE TABLE inventory (
    product_id INTEGER PRIMARY KEY REFERENCES products (id) ON DELETE CASCADE,
    available  INTEGER NOT NULL DEFAULT 0 CONSTRAINT inventory_available_non_negative CHECK (available >= 0),
    reserved   INTEGER NOT NULL DEFAULT 0 CONSTRAINT inventory_reserved_non_negative CHECK (reserved >= 0),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE inventory_adjustments (
    id              INTEGER PRIMARY KEY,
    product_id      INTEGER NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    delta           INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    actor_subject   TEXT NOT NULL,
    resulting_available INTEGER NOT NULL,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (product_id, idempotency_key)
);

CREATE TABLE customers (
    id         INTEGER PRIMARY KEY,
    subject    TEXT NOT NULL UNIQUE,
    email      TEXT,
    name       TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE carts (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL UNIQUE REFERENCES customers (id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE cart_items (
    cart_id    INTEGER NOT NULL REFERENCES carts (id) ON DELETE CASCADE,
    product_id INTEGER NOT NULL REFERENCES products (id),
    quantity   INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 999),
    added_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (cart_id, product_id)
);

CREATE TABLE orders (
    id                INTEGER PRIMARY KEY,
    customer_id       INTEGER NOT NULL REFERENCES customers (id),
    status            TEXT NOT NULL CHECK (status IN ('PENDING', 'PAID', 'FULFILLED', 'CANCELLED', 'REFUNDED')),
    currency_code     TEXT NOT NULL CHECK (length(currency_code) = 3),
    subtotal_amount   INTEGER NOT NULL CHECK (subtotal_amount >= 0),
    total_amount      INTEGER NOT NULL CHECK (total_amount >= 0),
    idempotency_key   TEXT,
    request_hash      TEXT,
    payment_reference TEXT,
    shipping_address  TEXT,
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT orders_idempotency_key UNIQUE (customer_id, idempotency_key)
);
CREATE INDEX orders_customer_idx ON orders (customer_id, id DESC);
CREATE INDEX orders_status_idx ON orders (status, id DESC);

CREATE TABLE order_items (
    id                INTEGER PRIMARY KEY,
    order_id          INTEGER NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id        INTEGER NOT NULL REFERENCES products (id),
    vendor_id         INTEGER NOT NULL REFERENCES vendors (id),
    sku               TEXT NOT NULL,
    name              TEXT NOT NULL,
    unit_price_amount INTEGER NOT NULL CHECK (unit_price_amount >= 0),
    currency_code     TEXT NOT NULL CHECK (length(currency_code) = 3),
    quantity          INTEGER NOT NULL CHECK (quantity > 0),
    line_total_amount INTEGER NOT NULL CHECK (line_total_amount >= 0)
);
CREATE INDEX order_items_order_idx ON order_items (order_id, id);
CREATE INDEX order_items_vendor_idx ON order_items (vendor_id, order_id DESC);

CREATE TABLE payments (
    id                 INTEGER PRIMARY KEY,
    order_id           INTEGER NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    kind               TEXT NOT NULL CHECK (kind IN ('CHARGE', 'REFUND')),
    status             TEXT NOT NULL CHECK (status IN ('APPROVED', 'DECLINED', 'FAILED', 'PENDING')),
    amount             INTEGER NOT NULL CHECK (amount >= 0),
    currency_code      TEXT NOT NULL CHECK (length(currency_code) = 3),
    provider_reference TEXT,
    idempotency_key    TEXT NOT NULL,
    created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (kind, idempotency_key)
);
CREATE INDEX payments_order_idx ON payments (order_id);
