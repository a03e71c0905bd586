//! The parameters of an FDSN event query, as both the clients and the pager speak them.

use chrono::{DateTime, Utc};
use url::Url;

/// The largest `limit` USGS's FDSN service accepts (its `maxAllowed`).
pub const USGS_MAX_LIMIT: u32 = 20000;

/// Parameters of an FDSN event query. Unset fields are not sent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FdsnQuery {
    /// `starttime` (origin time lower bound). Always set it for USGS: the service defaults to 30 days back.
    pub starttime: Option<DateTime<Utc>>,
    /// `endtime`.
    pub endtime: Option<DateTime<Utc>>,
    /// `updatedafter` (inclusive, second precision).
    pub updatedafter: Option<DateTime<Utc>>,
    /// USGS `minmagnitude`, EMSC `minmag`.
    pub minmagnitude: Option<f64>,
    /// `orderby`: `time`, `time-asc`, `magnitude`, `magnitude-asc`.
    pub orderby: Option<String>,
    /// `limit` (USGS: at most 20000).
    pub limit: Option<u32>,
    /// `offset`, 1-based as in FDSN (applied by USGS only together with `limit`).
    pub offset: Option<u64>,
    /// `includedeleted=true` (USGS only; sent only when true).
    pub includedeleted: bool,
    /// `eventid` (any associated id at USGS; the `unid` at EMSC).
    pub eventid: Option<String>,
}

/// FDSN time parameter: `YYYY-MM-DDTHH:MM:SS`, sub-seconds floored away.
pub fn fdsn_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// `base` with `pairs` appended to its query.
pub(crate) fn build_url(base: &Url, pairs: &[(&str, String)]) -> Url {
    let mut url = base.clone();
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    url
}
