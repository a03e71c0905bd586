//! The synthetic catalogue: event `i` of `N` is a pure function of `(seed, i)` and of the
//! snapshot's clock (`now`), so nothing is held in memory but a table of slot counts.
//!
//! - **Time.** Origin time is non-decreasing in the index: the range `[start, end)` is cut
//!   into 30-day slots whose event counts follow a seeded weight (a growing catalogue, with
//!   a few slots of aftershock sequences eight times as dense); inside a slot events are
//!   spread evenly with a jitter. A time bound maps to an index by binary search.
//! - **Life of an event.** Published 2 min to 100 h after its origin time (late arrivals),
//!   then revised up to three times within 60 days (magnitude, position, depth; the last
//!   revision may review it), sometimes re-worded without touching `updated` (USGS flips
//!   `place` between "N km DIR of Town" and the region name), and one event in 997 is
//!   revised again years later (old events keep changing). 0.4 % are deleted within 10 days
//!   of publication (kept with `status: deleted`, visible with `includedeleted`). 1.2 % are a
//!   second network's duplicate of the next event, associated with it within 3 days of
//!   publication: the duplicate leaves the catalogue and its id joins the survivor's `ids`
//!   (a quarter of the time the duplicate's id becomes the preferred one).
//! - **Shape.** Networks, magnitude types, magnitudes (Gutenberg-Richter above each network's
//!   completeness, a few null), depths (shallow regional, deep global, negative near
//!   volcanoes), places, ids and aliases (`us` ids of regional events, `usauto`, `at`, `pt`,
//!   rarely one `at` alias shared by two events), nullable properties in the proportions of
//!   the fixtures in `testdata/`.
//!
//! Every change time except the late revisions is within [`MAX_CHANGE_MS`] of the origin
//! time, which lets an `updatedafter` query skip the old part of the range.

use std::ops::Range;

use chrono::{DateTime, TimeZone, Utc};

/// How much later than its origin time an event can change (publication, revisions,
/// deletion, association), except the late revisions of one event in [`LATE_REVISION_EVERY`].
pub const MAX_CHANGE_MS: i64 = 70 * DAY_MS;
/// One event in this many (those with `i % LATE_REVISION_EVERY == seed % LATE_REVISION_EVERY`)
/// is revised once more at any time up to two years after the catalogue's end.
pub const LATE_REVISION_EVERY: u64 = 997;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
const SLOT_MS: i64 = 30 * DAY_MS;

/// What the catalogue holds.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthConfig {
    /// Events generated (before merges remove duplicates): 10k to 5M and beyond.
    pub events: u64,
    /// Every value derives from it: the same seed gives the same catalogue.
    pub seed: u64,
    /// First origin time.
    pub start: DateTime<Utc>,
    /// Origin times are before this.
    pub end: DateTime<Utc>,
    /// The snapshot's clock: what was published, revised, deleted or merged by then, and
    /// `metadata.generated`. [`crate::SynthServer::set_now`] moves it.
    pub now: DateTime<Utc>,
    /// The service's cap (`maxAllowed`; USGS: 20000).
    pub max_results: u64,
}

impl Default for SynthConfig {
    /// 100,000 events over 2000–2025, seen 30 days after the last one, USGS's cap.
    fn default() -> Self {
        let start = Utc
            .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        let end = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        SynthConfig {
            events: 100_000,
            seed: 17,
            start,
            end,
            now: end + chrono::Duration::days(30),
            max_results: 20_000,
        }
    }
}

// ---------------------------------------------------------------------------
// deterministic randomness

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The random draws of one event, one independent stream per field.
#[derive(Clone, Copy, Debug)]
struct Draw {
    key: u64,
}

/// Field numbers: each field has its own stream, so adding one shifts no other.
mod f {
    pub const ROLE: u64 = 1;
    pub const NET: u64 = 2;
    pub const JITTER: u64 = 3;
    pub const PUB: u64 = 4;
    pub const REVS: u64 = 5;
    pub const REV_DELAY: u64 = 6; // +j
    pub const REV_MAG: u64 = 10; // +j
    pub const REV_POS: u64 = 14; // +j
    pub const REVIEW: u64 = 18;
    pub const DELETE: u64 = 19;
    pub const MERGE: u64 = 20;
    pub const FLIP_ID: u64 = 21;
    pub const MAG: u64 = 22;
    pub const MAG_NULL: u64 = 23;
    pub const MAG_TYPE: u64 = 24;
    pub const LAT: u64 = 25;
    pub const LON: u64 = 26;
    pub const DEPTH: u64 = 27;
    pub const REGION: u64 = 28;
    pub const TOWN: u64 = 29;
    pub const DIST: u64 = 30;
    pub const DIR: u64 = 31;
    pub const PLACE_FLIP: u64 = 32;
    pub const TYPE: u64 = 33;
    pub const FELT: u64 = 34;
    pub const CDI: u64 = 35;
    pub const MMI: u64 = 36;
    pub const NST: u64 = 37;
    pub const DMIN: u64 = 38;
    pub const RMS: u64 = 39;
    pub const GAP: u64 = 40;
    pub const ALIAS: u64 = 41;
    pub const ALERT: u64 = 42;
    pub const LATE: u64 = 43;
    pub const SHARED: u64 = 44;
    pub const GEOSERVE: u64 = 46;
}

impl Draw {
    fn new(seed: u64, i: u64) -> Draw {
        Draw {
            key: mix(seed ^ mix(i.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1))),
        }
    }
    fn bits(self, field: u64) -> u64 {
        mix(self.key ^ field.wrapping_mul(0xd6e8_feb8_6659_fd93))
    }
    /// Uniform in [0, 1).
    fn unit(self, field: u64) -> f64 {
        (self.bits(field) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(self, field: u64, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit(field)
    }
    /// Log-uniform in [lo, hi).
    fn log_range(self, field: u64, lo: f64, hi: f64) -> f64 {
        (lo.ln() + (hi.ln() - lo.ln()) * self.unit(field)).exp()
    }
    fn below(self, field: u64, n: u64) -> u64 {
        self.bits(field) % n.max(1)
    }
    fn chance(self, field: u64, p: f64) -> bool {
        self.unit(field) < p
    }
    /// Standard normal (Box-Muller).
    fn normal(self, field: u64) -> f64 {
        let u1 = self.unit(field).max(1e-12);
        let u2 = self.unit(field ^ 0x5555);
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    fn pick<T: Copy>(self, field: u64, weighted: &[(T, u32)]) -> T {
        let total: u64 = weighted.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut x = self.below(field, total);
        for (v, w) in weighted {
            let w = u64::from(*w);
            if x < w {
                return *v;
            }
            x -= w;
        }
        weighted[0].0
    }
}

fn round_to(x: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (x * p).round() / p
}

// ---------------------------------------------------------------------------
// networks and regions

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum CodeStyle {
    /// `us`: `6000a92u` (era + 4 base-36 characters).
    Us,
    /// Eight digits from a base number (`ci39746767`).
    Digits(u64),
    /// `ak`: `0` + two-digit year + 7 base-36 characters (`ak0219c1ocm2`).
    Ak,
    /// `pr`: year + 7 digits.
    YearDigits,
    /// `ok`, `tx`: year + 5 letters (`tx2021ogfz`).
    YearLetters,
}

struct Net {
    code: &'static str,
    weight: u32,
    style: CodeStyle,
    /// Index into [`REGIONS`], or `None` for the global network.
    region: Option<usize>,
    mag_types: &'static [(&'static str, u32)],
    /// Magnitude of completeness: the smallest magnitudes it reports.
    mc: f64,
    mag_decimals: i32,
    types: &'static str,
    reviewed: f64,
}

#[rustfmt::skip]
const NETS: &[Net] = &[
    Net { code: "ak", weight: 170, style: CodeStyle::Ak, region: Some(0), mag_types: &[("ml", 95), ("mb", 3), ("mw", 2)], mc: 0.6, mag_decimals: 1, types: ",origin,phase-data,", reviewed: 0.6 },
    Net { code: "ci", weight: 150, style: CodeStyle::Digits(37_000_000), region: Some(1), mag_types: &[("ml", 96), ("mw", 2), ("mh", 2)], mc: 0.4, mag_decimals: 2, types: ",nearby-cities,origin,phase-data,scitech-link,", reviewed: 0.85 },
    Net { code: "nc", weight: 140, style: CodeStyle::Digits(71_000_000), region: Some(2), mag_types: &[("md", 97), ("ml", 2), ("mw", 1)], mc: 0.3, mag_decimals: 2, types: ",nearby-cities,origin,phase-data,scitech-link,", reviewed: 0.8 },
    Net { code: "us", weight: 120, style: CodeStyle::Us, region: None, mag_types: &[("mb", 62), ("mww", 14), ("ml", 12), ("mwr", 6), ("mb_lg", 4), ("ms_20", 2)], mc: 3.2, mag_decimals: 1, types: ",origin,phase-data,", reviewed: 0.9 },
    Net { code: "hv", weight: 100, style: CodeStyle::Digits(70_000_000), region: Some(3), mag_types: &[("ml", 85), ("md", 14), ("mw", 1)], mc: 1.2, mag_decimals: 2, types: ",origin,phase-data,", reviewed: 0.3 },
    Net { code: "nn", weight: 70, style: CodeStyle::Digits(0), region: Some(4), mag_types: &[("ml", 99), ("mw", 1)], mc: 0.2, mag_decimals: 1, types: ",origin,phase-data,", reviewed: 0.7 },
    Net { code: "uu", weight: 60, style: CodeStyle::Digits(60_000_000), region: Some(5), mag_types: &[("md", 60), ("ml", 40)], mc: 0.6, mag_decimals: 2, types: ",origin,phase-data,", reviewed: 0.8 },
    Net { code: "pr", weight: 40, style: CodeStyle::YearDigits, region: Some(6), mag_types: &[("md", 99), ("ml", 1)], mc: 1.8, mag_decimals: 2, types: ",geoserve,origin,phase-data,", reviewed: 0.8 },
    Net { code: "uw", weight: 30, style: CodeStyle::Digits(61_000_000), region: Some(7), mag_types: &[("ml", 85), ("md", 12), ("mh", 3)], mc: 0.5, mag_decimals: 2, types: ",origin,phase-data,", reviewed: 0.9 },
    Net { code: "av", weight: 30, style: CodeStyle::Digits(91_000_000), region: Some(8), mag_types: &[("ml", 100)], mc: 0.3, mag_decimals: 1, types: ",origin,phase-data,", reviewed: 0.5 },
    Net { code: "ok", weight: 20, style: CodeStyle::YearLetters, region: Some(9), mag_types: &[("ml", 100)], mc: 1.0, mag_decimals: 2, types: ",origin,phase-data,", reviewed: 0.9 },
    Net { code: "tx", weight: 20, style: CodeStyle::YearLetters, region: Some(10), mag_types: &[("ml", 100)], mc: 1.2, mag_decimals: 1, types: ",origin,phase-data,", reviewed: 0.8 },
    Net { code: "mb", weight: 15, style: CodeStyle::Digits(80_000_000), region: Some(11), mag_types: &[("ml", 90), ("md", 10)], mc: 0.8, mag_decimals: 2, types: ",origin,phase-data,", reviewed: 0.9 },
    Net { code: "se", weight: 5, style: CodeStyle::Digits(60_000_000), region: Some(12), mag_types: &[("md", 100)], mc: 0.8, mag_decimals: 2, types: ",origin,phase-data,", reviewed: 0.9 },
    Net { code: "nm", weight: 5, style: CodeStyle::Digits(60_000_000), region: Some(13), mag_types: &[("md", 100)], mc: 0.8, mag_decimals: 2, types: ",origin,phase-data,", reviewed: 0.9 },
    Net { code: "ismpkansas", weight: 1, style: CodeStyle::Digits(70_000_000), region: Some(14), mag_types: &[("ml", 100)], mc: 1.0, mag_decimals: 2, types: ",origin,", reviewed: 0.5 },
];

const US: usize = 3;

struct Region {
    lat: (f64, f64),
    lon: (f64, f64),
    /// The region name (the place a re-worded event gets), and the `, X` of town places.
    name: &'static str,
    suffix: &'static str,
    towns: &'static [&'static str],
    /// Depth: median km of the shallow part, and the share of deep events.
    depth_median: f64,
    deep: f64,
}

#[rustfmt::skip]
const REGIONS: &[Region] = &[
    Region { lat: (51.0, 71.0), lon: (-179.5, -130.0), name: "Southern Alaska", suffix: "Alaska", towns: &["Anchorage", "Kobuk", "Cantwell", "Petersville", "Y", "Sand Point", "Pedro Bay", "Healy"], depth_median: 15.0, deep: 0.15 },
    Region { lat: (32.0, 36.5), lon: (-121.0, -114.5), name: "Southern California", suffix: "CA", towns: &["Colton", "Ridgecrest", "Borrego Springs", "Anza", "Ocotillo Wells", "Searles Valley", "Pinyon Pines", "Lone Pine"], depth_median: 7.0, deep: 0.0 },
    Region { lat: (35.5, 42.0), lon: (-124.5, -118.5), name: "Northern California", suffix: "CA", towns: &["The Geysers", "Cobb", "Anderson Springs", "Petrolia", "Ferndale", "Mammoth Lakes", "Parkfield", "Aromas"], depth_median: 5.0, deep: 0.0 },
    Region { lat: (18.9, 20.3), lon: (-156.1, -154.8), name: "Island of Hawaii, Hawaii", suffix: "Hawaii", towns: &["Pāhala", "Volcano", "Leilani Estates", "Fern Forest", "Honaunau-Napoopoo", "Waimea"], depth_median: 3.0, deep: 0.02 },
    Region { lat: (36.0, 42.0), lon: (-120.0, -114.0), name: "Nevada", suffix: "Nevada", towns: &["Mina", "Tonopah", "Dayton", "Silver Springs", "Gabbs", "Indian Springs"], depth_median: 8.0, deep: 0.0 },
    Region { lat: (37.0, 42.5), lon: (-114.0, -109.0), name: "Utah", suffix: "Utah", towns: &["Magna", "Cedar City", "Beaver", "Randolph", "Ephraim", "Helper"], depth_median: 6.0, deep: 0.0 },
    Region { lat: (17.0, 20.0), lon: (-68.5, -64.0), name: "Puerto Rico region", suffix: "Puerto Rico", towns: &["Guanica", "Indios", "Tallaboa", "Maria Antonia", "Esperanza"], depth_median: 10.0, deep: 0.05 },
    Region { lat: (42.0, 49.0), lon: (-125.0, -117.0), name: "Washington", suffix: "WA", towns: &["Port Townsend", "Ashford", "Mount St. Helens", "Entiat", "Bremerton"], depth_median: 9.0, deep: 0.05 },
    Region { lat: (51.0, 62.0), lon: (-180.0, -150.0), name: "Andreanof Islands, Aleutian Islands, Alaska", suffix: "Alaska", towns: &["Adak", "Atka", "Akutan", "Nikolski", "Unalaska"], depth_median: 6.0, deep: 0.1 },
    Region { lat: (34.0, 37.0), lon: (-99.5, -95.0), name: "Oklahoma", suffix: "Oklahoma", towns: &["Pawnee", "Medford", "Cushing", "Guthrie", "Perry"], depth_median: 6.0, deep: 0.0 },
    Region { lat: (28.0, 34.0), lon: (-105.0, -97.0), name: "western Texas", suffix: "Texas", towns: &["Mentone", "Pecos", "Stanton", "Snyder", "Toyah"], depth_median: 6.0, deep: 0.0 },
    Region { lat: (44.0, 49.0), lon: (-116.0, -104.0), name: "Montana", suffix: "Montana", towns: &["Lincoln", "West Yellowstone", "Helena", "Dillon"], depth_median: 9.0, deep: 0.0 },
    Region { lat: (33.0, 38.0), lon: (-90.0, -80.0), name: "eastern Tennessee", suffix: "Tennessee", towns: &["Decatur", "Tellico Plains", "Dandridge", "Greenback"], depth_median: 12.0, deep: 0.0 },
    Region { lat: (35.0, 38.0), lon: (-91.0, -88.0), name: "southeastern Missouri", suffix: "Missouri", towns: &["Ridgely", "Tiptonville", "Marston", "Risco"], depth_median: 8.0, deep: 0.0 },
    Region { lat: (37.0, 38.0), lon: (-98.5, -97.0), name: "Kansas", suffix: "Kansas", towns: &["Caldwell", "Anthony", "Harper", "Milan"], depth_median: 5.0, deep: 0.0 },
];

/// Where the global network's events are: (weight, lat, lon, region name, towns with country).
struct GlobalRegion {
    weight: u32,
    lat: (f64, f64),
    lon: (f64, f64),
    name: &'static str,
    towns: &'static [&'static str],
}

#[rustfmt::skip]
const GLOBAL: &[GlobalRegion] = &[
    GlobalRegion { weight: 14, lat: (-10.0, 5.0), lon: (95.0, 135.0), name: "Indonesia", towns: &["Sinabang, Indonesia", "Ternate, Indonesia", "Abepura, Indonesia", "Tobelo, Indonesia"] },
    GlobalRegion { weight: 10, lat: (30.0, 45.0), lon: (135.0, 146.0), name: "near east coast of Honshu, Japan", towns: &["Namie, Japan", "Iwaki, Japan", "Ishinomaki, Japan", "Miyako, Japan"] },
    GlobalRegion { weight: 9, lat: (-45.0, -15.0), lon: (-75.5, -67.0), name: "offshore Chile", towns: &["Ovalle, Chile", "Calama, Chile", "Iquique, Chile", "Talca, Chile"] },
    GlobalRegion { weight: 9, lat: (-24.0, -14.0), lon: (174.0, 186.0), name: "Fiji region", towns: &["Neiafu, Tonga", "Hihifo, Tonga", "Levuka, Fiji", "Lambasa, Fiji"] },
    GlobalRegion { weight: 7, lat: (5.0, 20.0), lon: (120.0, 127.0), name: "Mindanao, Philippines", towns: &["Sarangani, Philippines", "Burias, Philippines", "Pondaguitan, Philippines"] },
    GlobalRegion { weight: 6, lat: (36.0, 42.0), lon: (19.0, 45.0), name: "Greece-Albania border region", towns: &["Lithakiá, Greece", "Asprángeloi, Greece", "Kumburgaz, Turkey", "Simav, Turkey", "Elbistan, Turkey"] },
    GlobalRegion { weight: 6, lat: (14.0, 20.0), lon: (-106.0, -92.0), name: "offshore Guerrero, Mexico", towns: &["Pinotepa Nacional, Mexico", "Acapulco, Mexico", "Matías Romero, Mexico"] },
    GlobalRegion { weight: 6, lat: (-8.0, -2.0), lon: (140.0, 156.0), name: "New Ireland region, Papua New Guinea", towns: &["Kokopo, Papua New Guinea", "Kandrian, Papua New Guinea", "Lae, Papua New Guinea"] },
    GlobalRegion { weight: 5, lat: (-18.0, -3.0), lon: (-81.0, -70.0), name: "near coast of Peru", towns: &["Lima, Peru", "Acari, Peru", "Yauya, Peru"] },
    GlobalRegion { weight: 5, lat: (-47.0, -34.0), lon: (166.0, 179.0), name: "North Island of New Zealand", towns: &["Te Anau, New Zealand", "Kaikoura, New Zealand", "Ohakune, New Zealand"] },
    GlobalRegion { weight: 5, lat: (25.0, 39.0), lon: (45.0, 75.0), name: "western Afghanistan", towns: &["Herat, Afghanistan", "Jurm, Afghanistan", "Khash, Iran", "Bandar Abbas, Iran"] },
    GlobalRegion { weight: 4, lat: (-60.0, -50.0), lon: (-30.0, -20.0), name: "South Sandwich Islands region", towns: &["Bristol Island, South Sandwich Islands"] },
    GlobalRegion { weight: 4, lat: (-2.0, 40.0), lon: (-45.0, -25.0), name: "northern Mid-Atlantic Ridge", towns: &["Ponta Delgada, Portugal"] },
    GlobalRegion { weight: 4, lat: (-22.0, -10.0), lon: (165.0, 171.0), name: "Vanuatu", towns: &["Port-Olry, Vanuatu", "Isangel, Vanuatu", "Sola, Vanuatu"] },
    GlobalRegion { weight: 3, lat: (50.0, 56.0), lon: (155.0, 165.0), name: "off east coast of Kamchatka", towns: &["Vilyuchinsk, Russia", "Ust'-Kamchatsk Staryy, Russia"] },
    GlobalRegion { weight: 3, lat: (25.0, 34.0), lon: (80.0, 100.0), name: "Nepal", towns: &["Kodari, Nepal", "Dipayal, Nepal", "Lobuche, Nepal"] },
];

#[rustfmt::skip]
const DIRS: [&str; 16] = [
    "N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE", "S", "SSW", "SW", "WSW", "W", "WNW", "NW", "NNW",
];

const B36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn base36(mut n: u64, width: usize) -> String {
    let mut out = Vec::with_capacity(width + 2);
    while n > 0 || out.len() < width {
        out.push(B36[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn letters(mut n: u64, width: usize) -> String {
    let mut out = Vec::with_capacity(width + 2);
    while n > 0 || out.len() < width {
        out.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn year_of(ms: i64) -> i32 {
    use chrono::Datelike;
    DateTime::<Utc>::from_timestamp_millis(ms).map_or(2000, |t| t.year())
}

/// The code of event `i` in network `style` (injective in `i` for each style).
fn code_for(style: CodeStyle, i: u64, time_ms: i64) -> String {
    const B36_4: u64 = 36 * 36 * 36 * 36;
    match style {
        CodeStyle::Us => format!("{}{}", 6000 + i / B36_4, base36(i % B36_4, 4)),
        CodeStyle::Digits(base) => format!("{:08}", base + i),
        CodeStyle::Ak => format!("0{:02}{}", year_of(time_ms) % 100, base36(i, 7)),
        CodeStyle::YearDigits => format!("{}{:07}", year_of(time_ms), i),
        CodeStyle::YearLetters => format!("{}{}", year_of(time_ms), letters(i, 5)),
    }
}

// ---------------------------------------------------------------------------
// the catalogue

/// What happens to an event over its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Normal,
    /// A second network's solution of event `i + 1`, merged into it later.
    Duplicate,
    /// Deleted upstream some time after publication.
    Deleted,
}

/// Whether deleted events are in a result (`includedeleted`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Deleted {
    /// Live events only (the default).
    #[default]
    Exclude,
    /// Live and deleted (`includedeleted=true`).
    Include,
    /// Deleted only (`includedeleted=only`).
    Only,
}

/// The filters of a query, in milliseconds since the epoch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// `starttime` (inclusive).
    pub start_ms: Option<i64>,
    /// `endtime` (inclusive, as at USGS).
    pub end_ms: Option<i64>,
    /// `updatedafter` (inclusive).
    pub updated_after_ms: Option<i64>,
    /// `minmagnitude` (events without a magnitude never match).
    pub min_magnitude: Option<f64>,
    /// `includedeleted`.
    pub deleted: Deleted,
}

/// The part of an event that filters need (no strings).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Core {
    pub index: u64,
    pub time_ms: i64,
    pub updated_ms: i64,
    pub magnitude: Option<f64>,
    pub deleted: bool,
}

/// One event as the service shows it at `now`: every property of a USGS summary feature.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthEvent {
    pub index: u64,
    pub id: String,
    pub net: &'static str,
    pub code: String,
    /// `,id1,id2,` as USGS sends it, the preferred id first.
    pub ids: String,
    pub sources: String,
    pub types: String,
    pub time_ms: i64,
    pub updated_ms: i64,
    pub tz: Option<i32>,
    pub magnitude: Option<f64>,
    pub mag_type: Option<&'static str>,
    pub place: String,
    pub longitude: f64,
    pub latitude: f64,
    pub depth_km: f64,
    pub status: &'static str,
    pub event_type: &'static str,
    pub felt: Option<i32>,
    pub cdi: Option<f64>,
    pub mmi: Option<f64>,
    pub alert: Option<&'static str>,
    pub tsunami: i32,
    pub sig: i32,
    pub nst: Option<i32>,
    pub dmin: Option<f64>,
    pub rms: f64,
    pub gap: Option<f64>,
}

impl SynthEvent {
    /// `M 4.4 - 57 km SSW of Lithakiá, Greece` (`M ?` without a magnitude).
    pub fn title(&self) -> String {
        match self.magnitude {
            Some(m) => format!("M {m:.1} - {}", self.place),
            None => format!("M ? - {}", self.place),
        }
    }
}

/// The whole catalogue: a configuration and a table of slot counts.
#[derive(Clone, Debug)]
pub struct Catalogue {
    cfg: SynthConfig,
    start_ms: i64,
    end_ms: i64,
    /// `cum[s]` = events before slot `s`; `cum.last()` = N.
    cum: Vec<u64>,
}

/// The state of one event at a time: what filters and output both start from.
#[derive(Clone, Copy, Debug)]
struct Life {
    d: Draw,
    time_ms: i64,
    published_ms: i64,
    revisions_applied: usize,
    last_revision_ms: Option<i64>,
    late_applied: bool,
    deleted_at: Option<i64>,
    /// This event absorbed its duplicate (event `index - 1`) at this time.
    merged_in_at: Option<i64>,
}

impl Catalogue {
    pub fn new(cfg: SynthConfig) -> Catalogue {
        let start_ms = cfg.start.timestamp_millis();
        let end_ms = cfg.end.timestamp_millis().max(start_ms + 1);
        let slots = ((end_ms - start_ms + SLOT_MS - 1) / SLOT_MS).max(1) as usize;
        // Slot weights: a catalogue that grows over the years, noise, and a few sequences.
        let mut weights = Vec::with_capacity(slots);
        for s in 0..slots {
            let d = Draw::new(cfg.seed ^ 0xa5a5_5a5a, s as u64);
            let trend = 1.0 + 2.0 * (s as f64 / slots as f64);
            let noise = (0.35 * d.normal(1)).exp();
            let burst = if d.chance(2, 0.03) { 8.0 } else { 1.0 };
            weights.push(trend * noise * burst);
        }
        let total: f64 = weights.iter().sum();
        let mut cum = Vec::with_capacity(slots + 1);
        cum.push(0u64);
        let mut acc = 0.0;
        for w in &weights {
            acc += w;
            let c = ((acc / total) * cfg.events as f64).round() as u64;
            let prev = *cum.last().unwrap_or(&0);
            cum.push(c.clamp(prev, cfg.events));
        }
        if let Some(last) = cum.last_mut() {
            *last = cfg.events;
        }
        Catalogue {
            cfg,
            start_ms,
            end_ms,
            cum,
        }
    }

    pub fn config(&self) -> &SynthConfig {
        &self.cfg
    }

    /// N: events generated (merged duplicates included).
    pub fn len(&self) -> u64 {
        self.cfg.events
    }

    pub fn is_empty(&self) -> bool {
        self.cfg.events == 0
    }

    fn draw(&self, i: u64) -> Draw {
        Draw::new(self.cfg.seed, i)
    }

    fn base_role(&self, i: u64) -> Role {
        match self.draw(i).below(f::ROLE, 10_000) {
            0..120 => Role::Duplicate,
            120..160 => Role::Deleted,
            _ => Role::Normal,
        }
    }

    fn role(&self, i: u64) -> Role {
        match self.base_role(i) {
            Role::Duplicate if i + 1 < self.cfg.events && self.base_role(i + 1) == Role::Normal => {
                Role::Duplicate
            }
            Role::Duplicate => Role::Normal,
            r => r,
        }
    }

    /// Origin time before the duplicate adjustment.
    fn base_time(&self, i: u64) -> i64 {
        let s = self.cum.partition_point(|&c| c <= i).saturating_sub(1);
        let (lo, hi) = (self.cum[s], self.cum[s + 1]);
        let slot_start = self.start_ms + s as i64 * SLOT_MS;
        let slot_len = (self.end_ms - slot_start).min(SLOT_MS);
        let n = (hi - lo).max(1) as f64;
        let frac = ((i - lo) as f64 + self.draw(i).unit(f::JITTER)) / n;
        slot_start + (frac * slot_len as f64) as i64
    }

    /// Origin time of event `i` (non-decreasing in `i`). A duplicate is within two
    /// seconds before its mate when the gap allows.
    pub fn time_ms(&self, i: u64) -> i64 {
        let t = self.base_time(i);
        if self.role(i) == Role::Duplicate {
            let mate = self.base_time(i + 1);
            let lead = 200 + self.draw(i).below(f::MERGE ^ 7, 1800) as i64;
            t.max(mate - lead)
        } else {
            t
        }
    }

    /// The first index whose origin time is at or after `t` (N when none is).
    pub fn first_index_at_or_after(&self, t_ms: i64) -> u64 {
        let (mut lo, mut hi) = (0u64, self.cfg.events);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.time_ms(mid) < t_ms {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Indexes whose origin time is in `[start, end]` (both inclusive, as at USGS).
    pub fn index_range(&self, start_ms: Option<i64>, end_ms: Option<i64>) -> Range<u64> {
        let lo = start_ms.map_or(0, |t| self.first_index_at_or_after(t));
        let hi = end_ms.map_or(self.cfg.events, |t| {
            self.first_index_at_or_after(t.saturating_add(1))
        });
        lo..hi.max(lo)
    }

    fn is_late_revised(&self, i: u64) -> bool {
        i % LATE_REVISION_EVERY == self.cfg.seed % LATE_REVISION_EVERY
    }

    fn published_ms(&self, d: Draw, time_ms: i64) -> i64 {
        time_ms + (d.log_range(f::PUB, 2.0, 6000.0) * 60_000.0) as i64
    }

    fn revision_count(d: Draw) -> usize {
        d.pick(f::REVS, &[(0usize, 30), (1, 40), (2, 20), (3, 10)])
    }

    fn revision_times(d: Draw, published_ms: i64) -> [i64; 3] {
        let mut t = published_ms;
        let mut out = [0; 3];
        for (j, slot) in out.iter_mut().enumerate() {
            t += (d.log_range(f::REV_DELAY + j as u64, 5.0, 28_800.0) * 60_000.0) as i64;
            *slot = t;
        }
        out
    }

    fn late_revision_ms(&self, d: Draw, time_ms: i64) -> i64 {
        let horizon = self.end_ms + 730 * DAY_MS;
        time_ms + (d.unit(f::LATE) * (horizon - time_ms).max(1) as f64) as i64
    }

    /// When duplicate `i` is merged into `i + 1`.
    fn merge_ms(&self, i: u64) -> i64 {
        let d = self.draw(i);
        let t = self.time_ms(i);
        self.published_ms(d, t) + (d.log_range(f::MERGE, 10.0, 4320.0) * 60_000.0) as i64
    }

    /// The event's state at `now`, or `None` when it is not in the catalogue then (not yet
    /// published, or merged into its mate).
    fn life(&self, i: u64, now_ms: i64) -> Option<Life> {
        if i >= self.cfg.events {
            return None;
        }
        let d = self.draw(i);
        let role = self.role(i);
        let time_ms = self.time_ms(i);
        let published_ms = self.published_ms(d, time_ms);
        if published_ms > now_ms {
            return None;
        }
        if role == Role::Duplicate && self.merge_ms(i) <= now_ms {
            return None;
        }
        let revs = Self::revision_times(d, published_ms);
        let revisions_applied = revs[..Self::revision_count(d)]
            .iter()
            .filter(|&&t| t <= now_ms)
            .count();
        let last_revision_ms = revisions_applied.checked_sub(1).map(|j| revs[j]);
        let late_applied = self.is_late_revised(i) && self.late_revision_ms(d, time_ms) <= now_ms;
        let deleted_at = (role == Role::Deleted)
            .then(|| published_ms + (d.log_range(f::DELETE, 10.0, 14_400.0) * 60_000.0) as i64)
            .filter(|&t| t <= now_ms);
        let merged_in_at = (i > 0 && self.role(i - 1) == Role::Duplicate)
            .then(|| self.merge_ms(i - 1))
            .filter(|&t| t <= now_ms);
        Some(Life {
            d,
            time_ms,
            published_ms,
            revisions_applied,
            last_revision_ms,
            late_applied,
            deleted_at,
            merged_in_at,
        })
    }

    fn updated_ms(&self, l: &Life) -> i64 {
        let mut u = l.published_ms;
        for t in [l.last_revision_ms, l.deleted_at, l.merged_in_at]
            .into_iter()
            .flatten()
        {
            u = u.max(t);
        }
        if l.late_applied {
            u = u.max(self.late_revision_ms(l.d, l.time_ms));
        }
        u
    }

    fn net_of(&self, i: u64) -> usize {
        let own = self.net_of_plain(i);
        if self.role(i) == Role::Duplicate {
            // A second network's solution: the global network's for a regional event, a
            // regional network's for a global one.
            match (self.net_of_plain(i + 1), own) {
                (US, US) => 0,
                (US, regional) => regional,
                _ => US,
            }
        } else {
            own
        }
    }

    fn net_of_plain(&self, i: u64) -> usize {
        let total: u64 = NETS.iter().map(|n| u64::from(n.weight)).sum();
        let mut x = self.draw(i).below(f::NET, total);
        for (k, n) in NETS.iter().enumerate() {
            let w = u64::from(n.weight);
            if x < w {
                return k;
            }
            x -= w;
        }
        0
    }

    /// The magnitude at the revision applied.
    fn magnitude(l: &Life, net: &Net) -> Option<f64> {
        let d = l.d;
        if d.chance(f::MAG_NULL, 0.003) {
            return None;
        }
        // Gutenberg-Richter (b = 1) above the completeness, smeared below it.
        let u = d.unit(f::MAG).max(1e-12);
        let mut m = net.mc - u.ln() / std::f64::consts::LN_10 + 0.25 * d.normal(f::MAG ^ 3) - 0.3;
        if net.code == "us" {
            m = m.max(2.5);
        }
        for j in 0..l.revisions_applied {
            m += d.range(f::REV_MAG + j as u64, -0.25, 0.25);
        }
        Some(round_to(m.clamp(-1.6, 9.4), net.mag_decimals))
    }

    /// Filters' view of event `i` at `now`.
    pub fn core(&self, i: u64, now_ms: i64) -> Option<Core> {
        let l = self.life(i, now_ms)?;
        let src = self.located_index(i);
        let net = &NETS[self.net_of(src)];
        let magnitude = Self::magnitude(&self.life_for_values(i, src, &l), net);
        Some(Core {
            index: i,
            time_ms: l.time_ms,
            updated_ms: self.updated_ms(&l),
            magnitude,
            deleted: l.deleted_at.is_some(),
        })
    }

    /// A duplicate's values (position, magnitude) derive from its mate's.
    fn located_index(&self, i: u64) -> u64 {
        if self.role(i) == Role::Duplicate {
            i + 1
        } else {
            i
        }
    }

    /// The life whose draws give the values: the mate's for a duplicate (with the
    /// duplicate's own revisions), the event's own otherwise.
    fn life_for_values(&self, i: u64, src: u64, l: &Life) -> Life {
        if src == i {
            *l
        } else {
            Life {
                d: self.draw(src),
                ..*l
            }
        }
    }

    /// Whether event `i` matches `filter` at `now` (`None`: it is not in the catalogue).
    pub fn matches(&self, i: u64, now_ms: i64, filter: &Filter) -> bool {
        let Some(c) = self.core(i, now_ms) else {
            return false;
        };
        let deleted_ok = match filter.deleted {
            Deleted::Exclude => !c.deleted,
            Deleted::Include => true,
            Deleted::Only => c.deleted,
        };
        deleted_ok
            && filter.updated_after_ms.is_none_or(|u| c.updated_ms >= u)
            && filter
                .min_magnitude
                .is_none_or(|m| c.magnitude.is_some_and(|x| x >= m))
    }

    /// The indexes a query with `filter` has to look at, in time order (ascending or
    /// descending): the time range, narrowed by `updatedafter` to the events that can have
    /// changed since (the recent part of the range, and the late-revised ones before it).
    pub fn candidates(&self, filter: &Filter, ascending: bool) -> Candidates {
        let range = self.index_range(filter.start_ms, filter.end_ms);
        let (sparse, dense) = match filter.updated_after_ms {
            Some(u) => {
                let cut = self
                    .first_index_at_or_after(u.saturating_sub(MAX_CHANGE_MS))
                    .clamp(range.start, range.end);
                (range.start..cut, cut..range.end)
            }
            None => (range.start..range.start, range),
        };
        let step = LATE_REVISION_EVERY;
        let phase = self.cfg.seed % step;
        let first_late = sparse.start + (phase + step - sparse.start % step) % step;
        Candidates {
            ascending,
            late: (first_late, sparse.end, step),
            dense,
            late_done: false,
            next_late: first_late,
            last_late: if sparse.end > first_late {
                first_late + (sparse.end - 1 - first_late) / step * step
            } else {
                u64::MAX
            },
        }
    }

    /// Event `i` as served at `now` (`None`: not in the catalogue then).
    pub fn event(&self, i: u64, now_ms: i64) -> Option<SynthEvent> {
        let l = self.life(i, now_ms)?;
        let src = self.located_index(i);
        let vl = self.life_for_values(i, src, &l);
        let vd = vl.d;
        let net = &NETS[self.net_of(i)];
        let value_net = &NETS[self.net_of(src)];
        let magnitude = Self::magnitude(&vl, value_net);
        let mag_type = magnitude.map(|_| vd.pick(f::MAG_TYPE, value_net.mag_types));

        // Position.
        let (mut lat, mut lon, region_name, town) = match value_net.region {
            Some(r) => {
                let reg = &REGIONS[r];
                let town = reg.towns[vd.below(f::TOWN, reg.towns.len() as u64) as usize];
                (
                    vd.range(f::LAT, reg.lat.0, reg.lat.1),
                    vd.range(f::LON, reg.lon.0, reg.lon.1),
                    reg.name,
                    format!("{town}, {}", reg.suffix),
                )
            }
            None => {
                let table: Vec<(usize, u32)> = GLOBAL
                    .iter()
                    .enumerate()
                    .map(|(k, g)| (k, g.weight))
                    .collect();
                let g = &GLOBAL[vd.pick(f::REGION, &table)];
                let town = g.towns[vd.below(f::TOWN, g.towns.len() as u64) as usize];
                (
                    vd.range(f::LAT, g.lat.0, g.lat.1),
                    vd.range(f::LON, g.lon.0, g.lon.1),
                    g.name,
                    town.to_string(),
                )
            }
        };
        let mut depth = match value_net.region {
            Some(r) => {
                let reg = &REGIONS[r];
                if vd.chance(f::DEPTH ^ 1, reg.deep) {
                    vd.range(f::DEPTH, 30.0, 180.0)
                } else {
                    (reg.depth_median.ln() + 0.9 * vd.normal(f::DEPTH)).exp() - 1.5
                }
            }
            None => {
                if vd.chance(f::DEPTH ^ 1, 0.4) {
                    10.0
                } else {
                    (35f64.ln() + 1.1 * vd.normal(f::DEPTH)).exp().min(700.0)
                }
            }
        };
        for j in 0..vl.revisions_applied {
            lat += vd.range(f::REV_POS + j as u64, -0.03, 0.03);
            lon += vd.range((f::REV_POS + j as u64) ^ 9, -0.03, 0.03);
            depth += vd.range((f::REV_POS + j as u64) ^ 17, -1.0, 1.0);
        }
        if src != i {
            // A duplicate: the other network's solution is a little off.
            lat += l.d.range(f::LAT, -0.05, 0.05);
            lon += l.d.range(f::LON, -0.05, 0.05);
        }
        let lat = round_to(lat.clamp(-89.999, 89.999), 4);
        let lon = round_to(((lon + 540.0) % 360.0) - 180.0, 4);
        let depth = round_to(
            depth.max(-3.5),
            if value_net.mag_decimals == 1 { 1 } else { 2 },
        );

        // Place: "57km SSW of Lithakiá, Greece" before mid-2020, "57 km ..." after; a few
        // events are re-worded to their region's name (USGS does so without touching `updated`).
        let dist = vd.log_range(f::DIST, 1.0, 150.0) as u64;
        let dir = DIRS[vd.below(f::DIR, 16) as usize];
        let sep = if l.time_ms < 1_590_969_600_000 {
            ""
        } else {
            " "
        };
        let reworded = l.d.chance(f::PLACE_FLIP, 0.02)
            && l.published_ms
                + (l.d.log_range(f::PLACE_FLIP ^ 1, 60.0, 28_800.0) * 60_000.0) as i64
                <= now_ms;
        let place = if reworded || (value_net.region.is_none() && vd.chance(f::DIST ^ 1, 0.2)) {
            region_name.to_string()
        } else {
            format!("{dist}{sep}km {dir} of {town}")
        };

        // Ids: the event's own, the aliases it carries, the absorbed duplicate's.
        let own_code = code_for(net.style, i, l.time_ms);
        let mut ids: Vec<(&'static str, String)> = vec![(net.code, own_code.clone())];
        let m = magnitude.unwrap_or(0.0);
        let modern = year_of(l.time_ms) >= 2023;
        if net.code == "us" {
            if modern && l.d.chance(f::ALIAS, 0.3) {
                ids.push(("usauto", code_for(CodeStyle::Us, i, l.time_ms)));
            }
            if m >= 5.5 {
                ids.push(("pt", format!("{:08}", i)));
                ids.push(("at", format!("00{}", base36(i, 6))));
            }
        } else if l.d.chance(f::ALIAS, 0.03)
            && (l.revisions_applied > 0 || Self::revision_count(l.d) == 0)
        {
            ids.push(("us", code_for(CodeStyle::Us, i, l.time_ms)));
        }
        if self.shares_alias(i) {
            ids.push(("at", format!("00{}", base36(i, 6))));
        }
        if i > 0 && self.shares_alias(i - 1) {
            ids.push(("at", format!("00{}", base36(i - 1, 6))));
        }
        if l.late_applied {
            ids.push(("iscgem", format!("{}", 600_000_000 + i)));
        }
        let mut preferred = 0usize;
        if l.merged_in_at.is_some() {
            let dup = i - 1;
            let dup_net = &NETS[self.net_of(dup)];
            let dup_time = self.time_ms(dup);
            ids.push((dup_net.code, code_for(dup_net.style, dup, dup_time)));
            if self.draw(dup).chance(f::FLIP_ID, 0.25) {
                preferred = ids.len() - 1;
            }
        }
        ids.dedup();
        let preferred = preferred.min(ids.len() - 1);
        let (pnet, pcode) = ids[preferred].clone();
        if preferred != 0 {
            let p = ids.remove(preferred);
            ids.insert(0, p);
        }
        let id = format!("{pnet}{pcode}");
        let ids_s = format!(
            ",{},",
            ids.iter()
                .map(|(n, c)| format!("{n}{c}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut sources: Vec<&str> = ids.iter().map(|(n, _)| *n).collect();
        sources.dedup();
        let sources = format!(",{},", sources.join(","));

        // Status and type.
        let deleted = l.deleted_at.is_some();
        let reviewed = (l.revisions_applied == Self::revision_count(l.d)
            && l.revisions_applied > 0
            && l.d.chance(f::REVIEW, value_net.reviewed.max(0.3)))
            || l.late_applied;
        let status = if deleted {
            "deleted"
        } else if reviewed {
            "reviewed"
        } else {
            "automatic"
        };
        let event_type = if m < 2.8 && value_net.region.is_some() {
            let old = year_of(l.time_ms) < 2015;
            vd.pick(
                f::TYPE,
                &[
                    ("earthquake", 9860),
                    (if old { "quarry" } else { "quarry blast" }, 80),
                    ("explosion", 30),
                    (
                        if value_net.code == "ak" {
                            "ice quake"
                        } else {
                            "other event"
                        },
                        15,
                    ),
                    (
                        if value_net.code == "hv" {
                            "volcanic eruption"
                        } else {
                            "chemical explosion"
                        },
                        3,
                    ),
                    ("experimental explosion", 1),
                ],
            )
        } else {
            "earthquake"
        };

        // Impact: felt reports, intensities, PAGER, tsunami flag.
        let felt_p =
            ((m - 1.5) / 4.0).clamp(0.0, 0.9) * if value_net.region.is_some() { 0.5 } else { 0.3 };
        let felt = vd.chance(f::FELT, felt_p).then(|| {
            (vd.log_range(f::FELT ^ 1, 1.0, 10f64.powf((m - 1.0).clamp(0.5, 4.2)))) as i32
        });
        let cdi = felt.map(|_| round_to(vd.range(f::CDI, 1.0, (m + 1.5).clamp(2.0, 9.0)), 1));
        let mmi = (m >= 3.8 && vd.chance(f::MMI, 0.8))
            .then(|| round_to(vd.range(f::MMI ^ 1, 2.0, (m + 1.2).min(9.5)), 3));
        let alert = (m >= 5.5 && net.code == "us").then(|| {
            vd.pick(
                f::ALERT,
                &[("green", 90), ("yellow", 6), ("orange", 3), ("red", 1)],
            )
        });
        let tsunami =
            i32::from(m >= 6.5 && value_net.region.is_none() && vd.chance(f::ALERT ^ 1, 0.6));
        let mut sig = if magnitude.is_some() {
            (m * 100.0 * m / 6.5).max(0.0)
        } else {
            0.0
        };
        if let Some(n) = felt {
            sig = sig.max(f64::from(n).ln() * 40.0);
        }
        let sig = sig.round() as i32;

        // Quality.
        let nst = (!vd.chance(f::NST, 0.15)).then(|| 3 + vd.below(f::NST ^ 1, 120) as i32);
        let dmin = (!vd.chance(f::DMIN, 0.17))
            .then(|| round_to(vd.log_range(f::DMIN ^ 1, 0.001, 12.0), 5));
        let rms = round_to(vd.range(f::RMS, 0.01, 1.3), 2);
        let gap = (!vd.chance(f::GAP, 0.1)).then(|| round_to(vd.range(f::GAP ^ 1, 15.0, 320.0), 0));

        let tz = (l.time_ms < 1_577_836_800_000).then(|| ((lon / 15.0).round() as i32) * 60);

        let mut types: Vec<&str> = net.types.trim_matches(',').split(',').collect();
        if felt.is_some() {
            types.push("dyfi");
        }
        if mmi.is_some() {
            types.push("shakemap");
        }
        if alert.is_some() {
            types.push("losspager");
        }
        if m >= 4.5 {
            types.push("moment-tensor");
        }
        if l.d.chance(f::GEOSERVE, 0.3) {
            types.push("geoserve");
        }
        if ids.len() > 1 {
            types.push("associate");
        }
        types.sort_unstable();
        types.dedup();
        let types = format!(",{},", types.join(","));

        Some(SynthEvent {
            index: i,
            id,
            net: pnet,
            code: pcode,
            ids: ids_s,
            sources,
            types,
            time_ms: l.time_ms,
            updated_ms: self.updated_ms(&l),
            tz,
            magnitude,
            mag_type,
            place,
            longitude: lon,
            latitude: lat,
            depth_km: depth,
            status,
            event_type,
            felt,
            cdi,
            mmi,
            alert,
            tsunami,
            sig,
            nst,
            dmin,
            rms,
            gap,
        })
    }

    /// One event in 20,000 shares its `at` alias with the next (two events listing one alias).
    fn shares_alias(&self, i: u64) -> bool {
        i + 1 < self.cfg.events && self.draw(i).below(f::SHARED, 20_000) == 0
    }

    /// The index of the event that answers `eventid=id` at `now`: the event whose `ids`
    /// hold it (a merged duplicate's id finds the event it was merged into).
    pub fn find(&self, id: &str, now_ms: i64) -> Option<u64> {
        let mut candidates: Vec<u64> = Vec::new();
        for k in self.decode_id(id) {
            candidates.extend([k, k + 1]);
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates.into_iter().find(|&k| {
            self.event(k, now_ms)
                .is_some_and(|e| e.ids.contains(&format!(",{id},")))
        })
    }

    /// Indexes an id can belong to (every network whose code style can read it).
    fn decode_id(&self, id: &str) -> Vec<u64> {
        let mut out = Vec::new();
        let mut try_code = |style: CodeStyle, code: &str| {
            if let Some(i) = decode_code(style, code)
                && i < self.cfg.events
            {
                out.push(i);
            }
        };
        for (prefix, style) in NETS
            .iter()
            .map(|n| (n.code, n.style))
            .chain([("usauto", CodeStyle::Us)])
        {
            if let Some(code) = id.strip_prefix(prefix) {
                try_code(style, code);
            }
        }
        if let Some(code) = id.strip_prefix("pt") {
            try_code(CodeStyle::Digits(0), code);
        }
        if let Some(i) = id.strip_prefix("at00").and_then(parse_base36) {
            out.push(i);
        }
        if let Some(code) = id.strip_prefix("iscgem")
            && let Ok(n) = code.parse::<u64>()
            && n >= 600_000_000
        {
            out.push(n - 600_000_000);
        }
        out
    }
}

fn parse_base36(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 12 {
        return None;
    }
    s.bytes().try_fold(0u64, |acc, b| {
        let v = B36.iter().position(|&c| c == b)? as u64;
        acc.checked_mul(36)?.checked_add(v)
    })
}

fn decode_code(style: CodeStyle, code: &str) -> Option<u64> {
    const B36_4: u64 = 36 * 36 * 36 * 36;
    match style {
        CodeStyle::Us => {
            if code.len() < 8 {
                return None;
            }
            let (era, rest) = code.split_at(code.len() - 4);
            let era: u64 = era.parse().ok()?;
            Some(era.checked_sub(6000)? * B36_4 + parse_base36(rest)?)
        }
        CodeStyle::Digits(base) => {
            if code.len() < 8 || !code.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            code.parse::<u64>().ok()?.checked_sub(base)
        }
        CodeStyle::Ak => parse_base36(code.get(3..)?),
        CodeStyle::YearDigits => code.get(4..)?.parse().ok(),
        CodeStyle::YearLetters => {
            let s = code.get(4..)?;
            s.bytes().try_fold(0u64, |acc, b| {
                b.is_ascii_lowercase()
                    .then(|| acc.checked_mul(26)?.checked_add(u64::from(b - b'a')))
                    .flatten()
            })
        }
    }
}

/// Indexes to look at, in order: the late-revised ones of the older part (a stride) and
/// every index of the recent part; see [`Catalogue::candidates`].
#[derive(Clone, Debug)]
pub struct Candidates {
    ascending: bool,
    /// `(first, end, step)` of the stride.
    late: (u64, u64, u64),
    dense: Range<u64>,
    late_done: bool,
    next_late: u64,
    last_late: u64,
}

impl Iterator for Candidates {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let (first, end, step) = self.late;
        if self.ascending {
            if !self.late_done {
                if self.next_late < end {
                    let i = self.next_late;
                    self.next_late += step;
                    return Some(i);
                }
                self.late_done = true;
            }
            self.dense.next()
        } else {
            if let Some(i) = self.dense.next_back() {
                return Some(i);
            }
            if self.last_late == u64::MAX || self.last_late < first {
                return None;
            }
            let i = self.last_late;
            self.last_late = if i >= first + step {
                i - step
            } else {
                u64::MAX
            };
            Some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(n: u64) -> Catalogue {
        Catalogue::new(SynthConfig {
            events: n,
            ..SynthConfig::default()
        })
    }

    #[test]
    fn codes_decode_to_their_index() {
        for i in [0u64, 1, 35, 1_679_615, 1_679_616, 4_999_999] {
            for style in [
                CodeStyle::Us,
                CodeStyle::Digits(37_000_000),
                CodeStyle::Ak,
                CodeStyle::YearDigits,
                CodeStyle::YearLetters,
            ] {
                let code = code_for(style, i, 1_600_000_000_000);
                assert_eq!(decode_code(style, &code), Some(i), "{style:?} {code}");
            }
        }
    }

    #[test]
    fn time_is_monotonic_and_maps_back_to_the_index() {
        let c = cat(20_000);
        let mut prev = i64::MIN;
        for i in 0..c.len() {
            let t = c.time_ms(i);
            assert!(t >= prev, "time goes back at {i}");
            prev = t;
        }
        for i in [0u64, 1, 777, 19_999] {
            let t = c.time_ms(i);
            let first = c.first_index_at_or_after(t);
            assert!(first <= i && c.time_ms(first) == t);
        }
        assert_eq!(c.first_index_at_or_after(i64::MAX), c.len());
    }

    #[test]
    fn late_stride_iterates_both_ways() {
        let c = cat(10_000);
        let f = Filter {
            updated_after_ms: Some(c.time_ms(9_000)),
            ..Filter::default()
        };
        let asc: Vec<u64> = c.candidates(&f, true).collect();
        let mut desc: Vec<u64> = c.candidates(&f, false).collect();
        desc.reverse();
        assert_eq!(asc, desc);
        assert!(asc.windows(2).all(|w| w[0] < w[1]));
        assert!(
            asc.iter()
                .filter(|&&i| i < 8_000)
                .all(|i| i % LATE_REVISION_EVERY == 17)
        );
    }
}
