//! Parsed documents, kept per distinct query text, so a repeated document (what clients send
//! almost always: the same operations with other variables, and persisted queries by design)
//! is parsed once, not on every request.
//!
//! Bounded: at most `MAX_DOCUMENTS` documents and `MAX_BYTES` of query text; past either, the
//! oldest entry goes first. Keyed by the text itself (a hash picks the slot, the stored text
//! confirms it), so two documents can never be confused. Documents that do not parse are not
//! kept. Measuring (depth, cost) still runs per request, since a page size can come from the
//! variables; validation runs in async-graphql, which offers no way to skip it for a document
//! it has validated before (see bench/NOTES.md).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;

/// Documents kept at most.
pub const MAX_DOCUMENTS: usize = 1_000;
/// Query text kept at most, in bytes (with the parsed forms, a few times that in memory).
pub const MAX_BYTES: usize = 8 * 1024 * 1024;

/// The cache of parsed documents.
#[derive(Default)]
pub struct Documents {
    inner: Mutex<Inner>,
    hasher: RandomState,
}

#[derive(Default)]
struct Inner {
    by_hash: HashMap<u64, (Arc<str>, Arc<ExecutableDocument>)>,
    /// Hashes, oldest first.
    order: VecDeque<u64>,
    bytes: usize,
}

impl Documents {
    /// The parsed `query`, from the cache or parsed now (and kept). Counts each real parse in
    /// `securecart_documents_parsed_total`.
    pub fn parse(&self, query: &str) -> async_graphql::parser::Result<Arc<ExecutableDocument>> {
        self.find_or_parse(query, true)
    }

    /// The parsed `query`, from the cache or parsed now without keeping it: for a document
    /// admitted earlier and needed again (a long stream's result, `gate`), so that thousands of
    /// distinct subscriptions do not churn the cache and push out the documents requests repeat.
    /// A parse here is counted too.
    pub fn find_or_parse(&self, query: &str, keep: bool) -> async_graphql::parser::Result<Arc<ExecutableDocument>> {
        let hash = self.hasher.hash_one(query);
        if let Some((text, document)) = self.lock().by_hash.get(&hash)
            && **text == *query
        {
            return Ok(document.clone());
        }
        metrics::counter!(crate::telemetry::metrics::DOCUMENTS_PARSED).increment(1);
        let document = Arc::new(async_graphql::parser::parse_query(query)?);
        if keep && query.len() <= MAX_BYTES / 16 {
            self.keep(hash, query, document.clone());
        }
        Ok(document)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn keep(&self, hash: u64, query: &str, document: Arc<ExecutableDocument>) {
        let mut inner = self.lock();
        if let Some((old, _)) = inner.by_hash.insert(hash, (Arc::from(query), document)) {
            // Another text with the same hash (or the same text, parsed twice at once).
            inner.bytes -= old.len();
            inner.order.retain(|h| *h != hash);
        }
        inner.order.push_back(hash);
        inner.bytes += query.len();
        while inner.by_hash.len() > MAX_DOCUMENTS || inner.bytes > MAX_BYTES {
            let Some(oldest) = inner.order.pop_front() else { break };
            if let Some((text, _)) = inner.by_hash.remove(&oldest) {
                inner.bytes -= text.len();
            }
        }
    }

    /// How many documents are kept.
    pub fn len(&self) -> usize {
        self.lock().by_hash.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_document_is_parsed_once_and_the_cache_stays_bounded() {
        let documents = Documents::default();
        let first = documents.parse("{ products(first: 2) { edges { cursor } } }").unwrap();
        let again = documents.parse("{ products(first: 2) { edges { cursor } } }").unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the second is the first, not parsed again");
        assert_eq!(documents.len(), 1);
        assert!(documents.parse("{ broken").is_err());
        assert_eq!(documents.len(), 1, "a document that does not parse is not kept");
        for n in 0..MAX_DOCUMENTS + 10 {
            documents.parse(&format!("{{ a{n}: __typename }}")).unwrap();
        }
        assert_eq!(documents.len(), MAX_DOCUMENTS, "the oldest go first");
        let big = format!("{{ __typename {} }}", " ".repeat(MAX_BYTES / 16 - 20));
        documents.parse(&big).unwrap();
        assert!(documents.lock().bytes <= MAX_BYTES);
    }

    /// A document needed again (a stream's result) comes from the cache when it is there; parsed
    /// anew, it is not kept, so it pushes nothing out.
    #[test]
    fn a_document_found_again_is_not_kept_when_parsed_anew() {
        let documents = Documents::default();
        documents.find_or_parse("{ a: __typename }", false).unwrap();
        assert_eq!(documents.len(), 0, "parsed, not kept");
        let kept = documents.parse("{ a: __typename }").unwrap();
        let found = documents.find_or_parse("{ a: __typename }", false).unwrap();
        assert!(Arc::ptr_eq(&kept, &found), "found in the cache, not parsed again");
        assert_eq!(documents.len(), 1);
    }
}
