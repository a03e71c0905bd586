//! The diesel schema, one `table!` for both backends.
//!
//! Timestamps use [`sql_types::UtcTs`]: `timestamptz` on PostgreSQL, fixed-width RFC 3339
//! text on SQLite (see [`crate::types::Ts`]). Everything else maps to types both backends share.

pub mod sql_types {
    /// A UTC timestamp: `timestamptz` on PostgreSQL, `TEXT` on SQLite.
    #[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId, Debug, Clone, Copy)]
    #[diesel(postgres_type(oid = 1184, array_oid = 1185))]
    #[diesel(sqlite_type(name = "Text"))]
    pub struct UtcTs;
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::UtcTs;

    earthquakes (id) {
        id -> Text,
        ids -> Text,
        time -> UtcTs,
        updated -> UtcTs,
        magnitude -> Nullable<Double>,
        mag_type -> Nullable<Text>,
        place -> Nullable<Text>,
        title -> Nullable<Text>,
        longitude -> Double,
        latitude -> Double,
        depth_km -> Nullable<Double>,
        status -> Text,
        event_type -> Nullable<Text>,
        net -> Nullable<Text>,
        code -> Nullable<Text>,
        tsunami -> Nullable<Integer>,
        sig -> Nullable<Integer>,
        felt -> Nullable<Integer>,
        alert -> Nullable<Text>,
        url -> Nullable<Text>,
        source -> Text,
        content_hash -> Text,
        first_seen_at -> UtcTs,
        last_changed_at -> UtcTs,
        merged_into -> Nullable<Text>,
        cdi -> Nullable<Double>,
        mmi -> Nullable<Double>,
        gap -> Nullable<Double>,
        sources -> Nullable<Text>,
        properties -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::UtcTs;

    sync_runs (id) {
        id -> BigInt,
        trigger -> Text,
        status -> Text,
        started_at -> UtcTs,
        finished_at -> Nullable<UtcTs>,
        fetched -> BigInt,
        inserted -> BigInt,
        updated -> BigInt,
        unchanged -> BigInt,
        deleted -> BigInt,
        merged -> BigInt,
        rejected -> BigInt,
        pages -> BigInt,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::UtcTs;

    rejected_records (id) {
        id -> BigInt,
        run_id -> Nullable<BigInt>,
        source_id -> Nullable<Text>,
        reason -> Text,
        payload -> Text,
        rejected_at -> UtcTs,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::UtcTs;

    sync_state (source) {
        source -> Text,
        cursor -> Nullable<UtcTs>,
        resume_offset -> BigInt,
        start_time -> Nullable<UtcTs>,
        updated_at -> UtcTs,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::UtcTs;

    event_changes (seq) {
        seq -> BigInt,
        event_id -> Text,
        kind -> Text,
        merged_into -> Nullable<Text>,
        committed_at -> UtcTs,
    }
}

diesel::joinable!(rejected_records -> sync_runs (run_id));
diesel::allow_tables_to_appear_in_same_query!(
    earthquakes,
    sync_runs,
    rejected_records,
    sync_state,
    event_changes
);
