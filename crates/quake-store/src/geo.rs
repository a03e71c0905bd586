//! The distance the read API's radius search uses, in Rust: SQLite runs it as a SQL
//! function each pooled connection registers ([`crate::pool`]), the tests compare with it.

/// The great-circle distance in degrees between two points (haversine, stable for small
/// distances). SQLite runs this very function (`SQLITE_DISTANCE_FN`); PostgreSQL the same
/// formula in SQL.
pub fn great_circle_deg(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dlat = (lat2 - lat1).to_radians();
    let dlon = (lon2 - lon1).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * h.clamp(0.0, 1.0).sqrt().asin().to_degrees()
}

/// The SQL function every SQLite connection of the pool registers: [`great_circle_deg`].
pub const SQLITE_DISTANCE_FN: &str = "quakesync_distance";
