//! Where events come from: the [`Source`] trait, and its implementations for quake-api's
//! clients (FDSN event service, USGS summary feed, EMSC). An embedder can implement it for
//! any other upstream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use quake_api::{
    ApiError, CountResponse, EmscClient, FdsnClient, FdsnQuery, FeedClient, HttpOptions, Page,
};
use serde::{Deserialize, Serialize};

/// A boxed future, so `Source` stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One page asked of a source. Paging is by keyset ([`quake_api::Keyset`]): each page
/// starts at the origin time of the last event read, in ascending origin time; there is
/// no offset.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    /// Events at or after this origin time (FDSN `starttime`, inclusive).
    pub starttime: Option<DateTime<Utc>>,
    /// Events up to this origin time (FDSN `endtime`).
    pub endtime: Option<DateTime<Utc>>,
    /// Events updated at or after this time (FDSN `updatedafter`): the cursor.
    pub updatedafter: Option<DateTime<Utc>>,
    pub min_magnitude: Option<f64>,
    /// Page size: the answer must hold at most this many records, in ascending origin
    /// time (FDSN `limit`, `orderby=time-asc`).
    pub limit: u32,
}

/// An upstream catalogue the engine can page through.
pub trait Source: Send + Sync {
    /// Key of this source's cursor in `sync_state` (`usgs`, `emsc`, ...).
    fn name(&self) -> &str;
    /// `fdsn`, `feed` or `emsc` (for status).
    fn kind(&self) -> &str;
    /// The upstream URL, without secrets.
    fn url(&self) -> &str;
    /// False when one request returns everything (a summary feed): no paging, no cursor.
    fn is_paged(&self) -> bool {
        true
    }
    /// Fetches one page.
    fn fetch_page<'a>(&'a self, req: &'a PageRequest) -> BoxFuture<'a, Result<Page, ApiError>>;
    /// How many events match `req`'s filters now (its `limit` aside), and the most one
    /// query may return, when the upstream can say (FDSN `count`, `maxAllowed`). A sync
    /// stops after three times the pages that count needs (plus ten) instead of at
    /// `sync.max_pages`; a backfill plans its windows by it (and cannot run without it).
    /// `None`: it cannot say.
    fn count<'a>(
        &'a self,
        _req: &'a PageRequest,
    ) -> BoxFuture<'a, Result<Option<CountResponse>, ApiError>> {
        Box::pin(async { Ok(None) })
    }
}

/// The upstreams quakesync knows, by their configuration name (`source.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The USGS FDSN event service (or anything speaking it): [`FdsnSource`].
    #[default]
    Fdsn,
    /// A USGS summary feed: [`FeedSource`].
    Feed,
    /// EMSC seismicportal: [`EmscSource`].
    Emsc,
}

impl SourceKind {
    /// The upstream this kind reads unless told otherwise.
    pub fn default_url(self) -> &'static str {
        match self {
            SourceKind::Fdsn => quake_api::USGS_FDSN_QUERY_URL,
            SourceKind::Feed => quake_api::USGS_FEED_URL,
            SourceKind::Emsc => quake_api::EMSC_FDSN_QUERY_URL,
        }
    }

    /// The source of this kind at `url`.
    pub fn source(self, url: &str, opts: HttpOptions) -> Result<Arc<dyn Source>, ApiError> {
        Ok(match self {
            SourceKind::Fdsn => Arc::new(FdsnSource(FdsnClient::new(url, opts)?)),
            SourceKind::Feed => Arc::new(FeedSource(FeedClient::new(url, opts)?)),
            SourceKind::Emsc => Arc::new(EmscSource(EmscClient::new(url, opts)?)),
        })
    }
}

fn fdsn_query(req: &PageRequest) -> FdsnQuery {
    FdsnQuery {
        starttime: req.starttime,
        endtime: req.endtime,
        updatedafter: req.updatedafter,
        minmagnitude: req.min_magnitude,
        orderby: Some("time-asc".into()),
        limit: Some(req.limit),
        offset: None,
        includedeleted: true,
        eventid: None,
    }
}

/// The USGS FDSN event service (or anything speaking it, another quakesync included).
pub struct FdsnSource(pub FdsnClient);

impl Source for FdsnSource {
    fn name(&self) -> &str {
        "usgs"
    }
    fn kind(&self) -> &str {
        "fdsn"
    }
    fn url(&self) -> &str {
        self.0.url()
    }
    fn fetch_page<'a>(&'a self, req: &'a PageRequest) -> BoxFuture<'a, Result<Page, ApiError>> {
        Box::pin(async move { self.0.query(&fdsn_query(req)).await })
    }
    fn count<'a>(
        &'a self,
        req: &'a PageRequest,
    ) -> BoxFuture<'a, Result<Option<CountResponse>, ApiError>> {
        let q = FdsnQuery {
            orderby: None,
            limit: None,
            ..fdsn_query(req)
        };
        Box::pin(async move { Ok(Some(self.0.count(&q).await?)) })
    }
}

/// A USGS summary feed: the whole feed each run, one request.
pub struct FeedSource(pub FeedClient);

impl Source for FeedSource {
    fn name(&self) -> &str {
        "usgs-feed"
    }
    fn kind(&self) -> &str {
        "feed"
    }
    fn url(&self) -> &str {
        self.0.url()
    }
    fn is_paged(&self) -> bool {
        false
    }
    fn fetch_page<'a>(&'a self, _req: &'a PageRequest) -> BoxFuture<'a, Result<Page, ApiError>> {
        Box::pin(async move { self.0.fetch().await })
    }
}

/// EMSC seismicportal's FDSN service (`format=json`).
pub struct EmscSource(pub EmscClient);

impl Source for EmscSource {
    fn name(&self) -> &str {
        "emsc"
    }
    fn kind(&self) -> &str {
        "emsc"
    }
    fn url(&self) -> &str {
        self.0.url()
    }
    fn fetch_page<'a>(&'a self, req: &'a PageRequest) -> BoxFuture<'a, Result<Page, ApiError>> {
        let mut q = fdsn_query(req);
        q.includedeleted = false;
        Box::pin(async move { self.0.query(&q).await })
    }
}
