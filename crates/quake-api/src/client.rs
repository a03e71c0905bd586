//! The upstream clients: USGS FDSN event service, USGS summary feeds, EMSC.

use chrono::{DateTime, Utc};
use url::Url;

use crate::error::ApiError;
use crate::event::Page;
use crate::http::{Fetched, HttpCore, HttpOptions, Validators, parse_http_url};
use crate::paging::Keyset;
use crate::parse::{
    CountResponse, parse_emsc, parse_usgs_any, parse_usgs_collection, parse_usgs_count,
};
use crate::query::{FdsnQuery, USGS_MAX_LIMIT, build_url, fdsn_time};
use quake_core::redact_parsed;

/// Default USGS FDSN event query URL.
pub const USGS_FDSN_QUERY_URL: &str = "https://earthquake.usgs.gov/fdsnws/event/1/query";
/// Default EMSC seismicportal FDSN event query URL.
pub const EMSC_FDSN_QUERY_URL: &str = "https://www.seismicportal.eu/fdsnws/event/1/query";
/// The USGS real-time summary feed of the last hour, all magnitudes: the default feed of the
/// sync's feed mode and of the live lane's poll ([`FeedClient::poll`]).
pub const USGS_FEED_URL: &str =
    "https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/all_hour.geojson";
fn common_pairs(q: &FdsnQuery, minmag_name: &'static str) -> Vec<(&'static str, String)> {
    let mut pairs = Vec::new();
    if let Some(t) = &q.starttime {
        pairs.push(("starttime", fdsn_time(t)));
    }
    if let Some(t) = &q.endtime {
        pairs.push(("endtime", fdsn_time(t)));
    }
    if let Some(t) = &q.updatedafter {
        pairs.push(("updatedafter", fdsn_time(t)));
    }
    if let Some(m) = q.minmagnitude {
        pairs.push((minmag_name, m.to_string()));
    }
    if let Some(o) = &q.orderby {
        pairs.push(("orderby", o.clone()));
    }
    if let Some(l) = q.limit {
        pairs.push(("limit", l.to_string()));
    }
    if let Some(o) = q.offset {
        pairs.push(("offset", o.to_string()));
    }
    if let Some(id) = &q.eventid {
        pairs.push(("eventid", id.clone()));
    }
    pairs
}

fn usgs_pairs(q: &FdsnQuery) -> Vec<(&'static str, String)> {
    let mut pairs = vec![("format", "geojson".to_owned())];
    pairs.extend(common_pairs(q, "minmagnitude"));
    if q.includedeleted {
        pairs.push(("includedeleted", "true".to_owned()));
    }
    pairs
}

/// Client of the USGS FDSN event service (`…/fdsnws/event/1/query`, `format=geojson`).
#[derive(Clone, Debug)]
pub struct FdsnClient {
    core: HttpCore,
    query_url: Url,
    count_url: Url,
    shown: String,
}

impl FdsnClient {
    /// `query_url` is the full `…/fdsnws/event/1/query` URL; the `count` URL is its sibling.
    pub fn new(query_url: &str, opts: HttpOptions) -> Result<Self, ApiError> {
        let query_url = parse_http_url(query_url)?;
        let mut count_url = query_url.join("count").map_err(|e| ApiError::InvalidUrl {
            url: redact_parsed(&query_url),
            reason: format!("cannot derive the count URL: {e}"),
        })?;
        count_url.set_query(query_url.query());
        Ok(FdsnClient {
            core: HttpCore::new(opts)?,
            shown: redact_parsed(&query_url),
            query_url,
            count_url,
        })
    }

    /// The query URL, redacted (no password, no secret query value).
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The full request URL that [`FdsnClient::query`] would use for `q`.
    pub fn query_url_for(&self, q: &FdsnQuery) -> Url {
        build_url(&self.query_url, &usgs_pairs(q))
    }

    /// Run a query. A single-`Feature` body (`eventid=`) is accepted too; 204 gives an empty page.
    pub async fn query(&self, q: &FdsnQuery) -> Result<Page, ApiError> {
        let url = self.query_url_for(q);
        match self.core.get(&url).await? {
            None => Ok(Page::default()),
            Some(body) => parse_usgs_any(&body).map_err(|e| e.with_url(&redact_parsed(&url))),
        }
    }

    /// The `count` method with the same parameters.
    pub async fn count(&self, q: &FdsnQuery) -> Result<CountResponse, ApiError> {
        let url = build_url(&self.count_url, &usgs_pairs(q));
        match self.core.get(&url).await? {
            None => Ok(CountResponse {
                count: 0,
                max_allowed: None,
            }),
            Some(body) => parse_usgs_count(&body).map_err(|e| e.with_url(&redact_parsed(&url))),
        }
    }
}

/// Client of one USGS real-time summary feed (`…/summary/*.geojson`).
#[derive(Clone, Debug)]
pub struct FeedClient {
    core: HttpCore,
    url: Url,
    shown: String,
}

impl FeedClient {
    /// `url` is the feed's URL, e.g. `https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/all_hour.geojson`.
    pub fn new(url: &str, opts: HttpOptions) -> Result<Self, ApiError> {
        let url = parse_http_url(url)?;
        Ok(FeedClient {
            core: HttpCore::new(opts)?,
            shown: redact_parsed(&url),
            url,
        })
    }

    /// The feed URL, redacted.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// Fetch and parse the feed.
    pub async fn fetch(&self) -> Result<Page, ApiError> {
        match self.core.get(&self.url).await? {
            None => Ok(Page::default()),
            Some(body) => parse_usgs_collection(&body).map_err(|e| e.with_url(&self.shown)),
        }
    }

    /// Poll the feed conditionally: `If-None-Match` / `If-Modified-Since` carry `previous`
    /// (the validators of the last answer; empty for the first poll, which is then
    /// unconditional). A 304 is [`FeedPoll::NotModified`]: no body read, nothing parsed.
    /// Otherwise the parsed page and the new validators, to pass to the next poll. Same
    /// retries, timeout and size cap as [`FeedClient::fetch`]; after an error keep the old
    /// validators.
    pub async fn poll(&self, previous: &Validators) -> Result<FeedPoll, ApiError> {
        match self.core.get_if_changed(&self.url, previous).await? {
            Fetched::NotModified => Ok(FeedPoll::NotModified),
            Fetched::NoContent => Ok(FeedPoll::Modified {
                page: Page::default(),
                validators: Validators::default(),
            }),
            Fetched::Body(body, validators) => Ok(FeedPoll::Modified {
                page: parse_usgs_collection(&body).map_err(|e| e.with_url(&self.shown))?,
                validators,
            }),
        }
    }
}

/// The answer to a conditional poll of a feed ([`FeedClient::poll`]).
#[derive(Clone, Debug, PartialEq)]
pub enum FeedPoll {
    /// 304: the feed has not changed since the validators sent.
    NotModified,
    /// The feed as it is now, and the validators to send next time (empty when the
    /// upstream sent none: the next poll is then unconditional).
    Modified {
        /// The parsed feed.
        page: Page,
        /// The answer's `ETag` and `Last-Modified`.
        validators: Validators,
    },
}

/// Client of the EMSC seismicportal FDSN event service (`format=json`).
///
/// Parameters sent: `format=json`, `starttime`, `endtime`, `updatedafter`, `minmag`,
/// `orderby`, `limit`, `offset`, `eventid` (`includedeleted` is not sent).
#[derive(Clone, Debug)]
pub struct EmscClient {
    core: HttpCore,
    query_url: Url,
    shown: String,
}

impl EmscClient {
    /// `query_url` is the full `…/fdsnws/event/1/query` URL.
    pub fn new(query_url: &str, opts: HttpOptions) -> Result<Self, ApiError> {
        let query_url = parse_http_url(query_url)?;
        Ok(EmscClient {
            core: HttpCore::new(opts)?,
            shown: redact_parsed(&query_url),
            query_url,
        })
    }

    /// The query URL, redacted.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The full request URL that [`EmscClient::query`] would use for `q`.
    pub fn query_url_for(&self, q: &FdsnQuery) -> Url {
        let mut pairs = vec![("format", "json".to_owned())];
        pairs.extend(common_pairs(q, "minmag"));
        build_url(&self.query_url, &pairs)
    }

    /// Run a query; 204 (no data) gives an empty page.
    pub async fn query(&self, q: &FdsnQuery) -> Result<Page, ApiError> {
        let url = self.query_url_for(q);
        match self.core.get(&url).await? {
            None => Ok(Page::default()),
            Some(body) => parse_emsc(&body).map_err(|e| e.with_url(&redact_parsed(&url))),
        }
    }
}

/// Pages through an FDSN query by keyset ([`Keyset`]), one page in memory at a time:
/// `orderby=time-asc`, `limit=batch_size`, and `starttime` moved to the second of the last
/// event read (the events of that second already returned are dropped), so an upstream
/// whose result set moves meanwhile costs nothing and skips nothing.
///
/// Stops after a short page, at an error (an upstream that does not page as asked is an
/// [`ApiError::Paging`] naming what it ignores), or at the ceiling set by
/// [`FdsnPager::with_max_pages`].
#[derive(Debug)]
pub struct FdsnPager {
    client: FdsnClient,
    base: FdsnQuery,
    keyset: Keyset,
    pages_fetched: u64,
    failed: bool,
}

impl FdsnPager {
    /// `batch_size` is clamped to `1..=20000`. Paging runs from the base query's
    /// `starttime` (unset: the service's default) to its `endtime`; its `limit`, `offset`
    /// and `orderby` are replaced, its other filters kept.
    pub fn new(client: FdsnClient, base: FdsnQuery, batch_size: u32) -> Self {
        let keyset = Keyset::new(
            base.starttime,
            base.endtime,
            batch_size.clamp(1, USGS_MAX_LIMIT),
        );
        FdsnPager {
            client,
            base,
            keyset,
            pages_fetched: 0,
            failed: false,
        }
    }

    /// Fails paging with [`crate::PagingError::Ceiling`] instead of making request `max + 1`.
    pub fn with_max_pages(mut self, max: u64) -> Self {
        self.keyset = self
            .keyset
            .with_ceiling(max, format!("the pager's ceiling of {max} requests"));
        self
    }

    /// The next page (without events already returned), or `None` once paging is over.
    pub async fn next_page(&mut self) -> Option<Result<Page, ApiError>> {
        if self.failed {
            return None;
        }
        let result = match self.keyset.next_ask() {
            Ok(None) => return None,
            Err(e) => Err(e.into()),
            Ok(Some(ask)) => {
                let mut q = self.base.clone();
                ask.apply(&mut q);
                match self.client.query(&q).await {
                    Ok(page) => self.keyset.accept(&ask, page).map_err(ApiError::from),
                    Err(e) => Err(e),
                }
            }
        };
        match &result {
            Ok(_) => self.pages_fetched += 1,
            Err(_) => self.failed = true,
        }
        Some(result)
    }

    /// Pages successfully fetched so far.
    pub fn pages_fetched(&self) -> u64 {
        self.pages_fetched
    }

    /// The `starttime` the next request would ask for.
    pub fn position(&self) -> Option<DateTime<Utc>> {
        self.keyset.position()
    }

    /// Whether paging is over.
    pub fn is_done(&self) -> bool {
        self.failed || self.keyset.is_done()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn urls() {
        let c = FdsnClient::new(
            "https://u:p@earthquake.usgs.gov/fdsnws/event/1/query",
            HttpOptions::default(),
        )
        .unwrap();
        assert_eq!(
            c.url(),
            "https://u:***@earthquake.usgs.gov/fdsnws/event/1/query"
        );
        assert_eq!(c.count_url.path(), "/fdsnws/event/1/count");
        let t = Utc.with_ymd_and_hms(2021, 7, 20, 14, 23, 0).unwrap()
            + chrono::Duration::milliseconds(999);
        let q = FdsnQuery {
            starttime: Some(t),
            minmagnitude: Some(2.5),
            includedeleted: true,
            ..Default::default()
        };
        let u = c.query_url_for(&q);
        assert_eq!(
            u.query(),
            Some(
                "format=geojson&starttime=2021-07-20T14%3A23%3A00&minmagnitude=2.5&includedeleted=true"
            )
        );
        assert!(FdsnClient::new("ftp://x/y", HttpOptions::default()).is_err());
        assert!(FdsnClient::new("not a url", HttpOptions::default()).is_err());
        let e = EmscClient::new(EMSC_FDSN_QUERY_URL, HttpOptions::default()).unwrap();
        let u = e.query_url_for(&FdsnQuery {
            minmagnitude: Some(2.5),
            limit: Some(10),
            ..Default::default()
        });
        assert_eq!(u.query(), Some("format=json&minmag=2.5&limit=10"));
    }
}
