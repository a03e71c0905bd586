//! Issue 17's read side on both backends: the catalogue counts kept by the writes stay equal
//! to a full count through every kind of write (and a rolled-back one); `eventid` by an alias;
//! deep offsets paged by keyset, and boxes answered by either index, equal plain statements.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use quake_store::testing::{TestDb, bare_record};
use quake_store::{self, EventQuery, IncludeDeleted, KEYSET_SKIP, OrderBy};
use quake_store::{EventRecord, Store, Ts, both_backends};
use quake_store::{Outcome, PageWrite, WriteMode};
use sync_engine::policy::decide;

fn ms(t: i64) -> Ts {
    Ts(DateTime::<Utc>::from_timestamp_millis(t).unwrap())
}

fn rec(id: &str, aliases: &[&str], time: i64, updated: i64, hash: &str) -> EventRecord {
    let mut all: Vec<&str> = aliases.to_vec();
    all.push(id);
    all.sort();
    all.dedup();
    EventRecord {
        time: ms(time),
        magnitude: Some(2.5),
        mag_type: Some("ml".into()),
        place: Some(format!("place of {id}")),
        longitude: -120.5,
        latitude: 35.25,
        depth_km: Some(5.0),
        event_type: Some("earthquake".into()),
        net: Some("ci".into()),
        code: Some(id.into()),
        sig: Some(100),
        ..bare_record(
            id,
            &format!(",{},", all.join(",")),
            updated,
            hash,
            "reviewed",
        )
    }
}

/// The kept counts equal a full count (and returns them).
async fn counts_exact(store: &Store, step: &str) -> (i64, i64, i64) {
    let kept = store.catalogue_counts().await.unwrap();
    let scanned = quake_store::testing::catalogue_counts_scan(store)
        .await
        .unwrap();
    assert_eq!(kept, scanned, "after {step}");
    (kept.live, kept.deleted, kept.merged)
}

async fn apply(store: &Store, mode: WriteMode, recs: &[EventRecord]) -> Vec<Outcome> {
    let res = (store
        .apply_page(PageWrite::new(recs).mode(mode), decide)
        .await)
        .unwrap();
    res.outcomes.into_iter().map(|(_, o)| o).collect()
}

async fn counts_through_every_write(store: Store, mode: WriteMode) {
    assert_eq!(counts_exact(&store, "nothing").await, (0, 0, 0));
    // inserts, one of them deleted on arrival
    let mut gone = rec("ci3", &[], 3, 1, "c");
    gone.status = "deleted".into();
    let page = vec![
        rec("ci1", &[], 1, 1, "a"),
        rec("ci2", &["us2"], 2, 1, "b"),
        gone,
        rec("ci4", &[], 4, 1, "d"),
    ];
    assert_eq!(
        apply(&store, mode, &page).await,
        vec![
            Outcome::Inserted,
            Outcome::Inserted,
            Outcome::Deleted,
            Outcome::Inserted
        ]
    );
    assert_eq!(counts_exact(&store, "inserts").await, (3, 1, 0));
    // a revision (no state moves) and a page seen again (nothing written)
    assert_eq!(
        apply(&store, mode, &[rec("ci1", &[], 1, 2, "a2")]).await,
        vec![Outcome::Updated]
    );
    assert_eq!(
        apply(&store, mode, &[rec("ci1", &[], 1, 2, "a2")]).await,
        vec![Outcome::Unchanged]
    );
    assert_eq!(counts_exact(&store, "a revision").await, (3, 1, 0));
    // a deletion, and a deleted event coming back
    let mut del = rec("ci4", &[], 4, 2, "d2");
    del.status = "deleted".into();
    assert_eq!(apply(&store, mode, &[del]).await, vec![Outcome::Deleted]);
    assert_eq!(counts_exact(&store, "a deletion").await, (2, 2, 0));
    assert_eq!(
        apply(&store, mode, &[rec("ci3", &[], 3, 2, "c2")]).await,
        vec![Outcome::Updated]
    );
    assert_eq!(counts_exact(&store, "an undeletion").await, (3, 1, 0));
    // a merge: us9 lists the stored ci1 among its ids
    assert_eq!(
        apply(&store, mode, &[rec("us9", &["ci1"], 1, 3, "m")]).await,
        vec![Outcome::Merged]
    );
    assert_eq!(counts_exact(&store, "a merge").await, (3, 1, 1));
    // a page rolled back: the counts are as before it
    {
        let page = [rec("ci5", &[], 5, 1, "e"), rec("ci6", &[], 6, 1, "f")];
        let rolled =
            quake_store::testing::apply_page_rolled_back(&store, PageWrite::new(&page), decide)
                .await
                .unwrap();
        assert_eq!(rolled.counts.inserted, 2);
    }
    assert_eq!(counts_exact(&store, "a rolled-back page").await, (3, 1, 1));
    // rows deleted outright (not a sync's doing, but the counts follow)
    {
        let mut conn = store.conn().await.unwrap();
        let mut db = conn.db();
        let n = quake_store::dispatch!(&mut db, c => {
            diesel_async::RunQueryDsl::execute(
                diesel::sql_query("DELETE FROM earthquakes WHERE id IN ('ci2', 'ci1')"),
                c,
            )
            .await
        })
        .unwrap();
        assert_eq!(n, 2);
    }
    assert_eq!(counts_exact(&store, "a DELETE").await, (2, 1, 0));
}

both_backends!(counts_exact_fast_path, async |db: TestDb| {
    counts_through_every_write(db.store().await, WriteMode::Auto).await;
});

both_backends!(counts_exact_per_record, async |db: TestDb| {
    counts_through_every_write(db.store().await, WriteMode::PerRecord).await;
});

both_backends!(eventid_by_alias, async |db: TestDb| {
    let store: Store = db.store().await;
    let mut del = rec("ci3", &["at3"], 3, 5, "c");
    del.status = "deleted".into();
    apply(
        &store,
        WriteMode::Auto,
        &[
            rec("ci1", &["us1", "at1"], 1, 1, "a"),
            rec("ci2", &[], 2, 1, "b"),
            // an alias shared by a live and a deleted event: the live one
            del,
            rec("ci4", &["at3"], 4, 1, "d"),
        ],
    )
    .await;
    let find = async |id: &str| store.find_by_any_id(id).await.unwrap().map(|e| e.record.id);
    assert_eq!(find("ci1").await.as_deref(), Some("ci1"));
    assert_eq!(find("us1").await.as_deref(), Some("ci1"));
    assert_eq!(find("at1").await.as_deref(), Some("ci1"));
    assert_eq!(find("at3").await.as_deref(), Some("ci4"));
    assert_eq!(find("ci2").await.as_deref(), Some("ci2"));
    // part of an id, a LIKE wildcard and a list are no alias
    assert_eq!(find("us").await, None);
    assert_eq!(find("us_").await, None);
    assert_eq!(find("us%").await, None);
    assert_eq!(find("us1,at1").await, None);
    assert_eq!(find("").await, None);
});

/// A catalogue with ties in time and magnitude, NULL magnitudes, deleted and merged rows.
fn seeded(n: usize) -> Vec<EventRecord> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let r = next();
            // about three rows per distinct time: ties broken by id
            let mut e = rec(
                &format!("ev{:05}", r % 100_000),
                &[],
                1_600_000_000_000 + (i as i64 / 3) * 1000,
                1,
                &format!("h{i}"),
            );
            e.magnitude = match r % 23 {
                0 => None,
                k => Some(f64::from((k % 7) as u32) * 0.5),
            };
            e.latitude = -60.0 + (r % 120) as f64;
            e.longitude = -170.0 + ((r >> 8) % 340) as f64;
            if r % 17 == 0 {
                e.status = "deleted".into();
            }
            e
        })
        .collect()
}

both_backends!(
    deep_offsets_and_boxes_equal_plain_statements,
    async |db: TestDb| {
        let store: Store = db.store().await;
        let n = 3 * KEYSET_SKIP as usize;
        let mut page = seeded(n);
        page.sort_by(|a, b| a.id.cmp(&b.id));
        page.dedup_by(|a, b| a.id == b.id);
        let stored = page.len() as i64;
        apply(&store, WriteMode::Auto, &page).await;
        // a few merged rows (listed nowhere)
        let survivors: Vec<EventRecord> = page
            .iter()
            .step_by(97)
            .map(|e| {
                let mut s = rec(&format!("m{}", e.id), &[&e.id], 1_600_000_000_000, 9, "s");
                s.time = e.time;
                s
            })
            .collect();
        let merged = apply(&store, WriteMode::Auto, &survivors).await;
        assert!(merged.iter().all(|o| *o == Outcome::Merged), "{merged:?}");
        let (live, deleted, merged) = counts_exact(&store, "the seeded catalogue").await;
        assert_eq!(live + deleted + merged, stored + survivors.len() as i64);
        assert!(live > 2 * KEYSET_SKIP, "{live}");

        let mut compared = 0;
        let mut rows_seen = 0;
        for orderby in [
            OrderBy::Time,
            OrderBy::TimeAsc,
            OrderBy::Magnitude,
            OrderBy::MagnitudeAsc,
        ] {
            for includedeleted in [
                IncludeDeleted::No,
                IncludeDeleted::Yes,
                IncludeDeleted::Only,
            ] {
                // boxes: wide (walked in time order), small (the point index), none;
                // magnitude ranges: about 2/7 and 1/7 of the rows (on SQLite read from the
                // magnitude index when the page wants enough of them, walked otherwise)
                for (filter, starttime, box_, magnitude) in [
                    ("none", None, None, (None, None)),
                    ("starttime", Some(ms(1_600_000_300_000)), None, (None, None)),
                    (
                        "box",
                        None,
                        Some((-10.0, 50.0, -100.0, 100.0)),
                        (None, None),
                    ),
                    (
                        "small box",
                        None,
                        Some((0.0, 10.0, -20.0, 20.0)),
                        (None, None),
                    ),
                    ("minmagnitude", None, None, (Some(2.5), None)),
                    ("magnitude range", None, None, (Some(2.9), Some(3.1))),
                ] {
                    for offset in [
                        1,
                        2,
                        40,
                        KEYSET_SKIP + 1,
                        KEYSET_SKIP + 2,
                        1777,
                        2 * KEYSET_SKIP + 1,
                        5000,
                    ] {
                        for limit in [1, 13, 1000] {
                            let q = EventQuery {
                                orderby,
                                includedeleted,
                                starttime,
                                minlatitude: box_.map(|b| b.0),
                                maxlatitude: box_.map(|b| b.1),
                                minlongitude: box_.map(|b| b.2),
                                maxlongitude: box_.map(|b| b.3),
                                minmagnitude: magnitude.0,
                                maxmagnitude: magnitude.1,
                                limit: Some(limit),
                                offset: Some(offset),
                                ..EventQuery::default()
                            };
                            let ids = |rows: Vec<quake_store::Earthquake>| {
                                rows.into_iter().map(|e| e.record.id).collect::<Vec<_>>()
                            };
                            let keyset = ids(store.query_events(&q).await.unwrap());
                            let plain =
                                ids(quake_store::testing::query_events_plain_offset(&store, &q)
                                    .await
                                    .unwrap());
                            assert_eq!(
                                keyset, plain,
                                "{orderby:?} {includedeleted:?} {filter} offset {offset} limit {limit}"
                            );
                            compared += 1;
                            rows_seen += plain.len();
                        }
                    }
                }
            }
        }
        assert_eq!(compared, 4 * 3 * 6 * 8 * 3);
        assert!(
            rows_seen > 10_000,
            "the pages compared were mostly empty: {rows_seen}"
        );
    }
);

/// The seeded catalogue of [`seeded`], stored (ids made unique); returns its records.
async fn store_seeded(store: &Store, n: usize) -> Vec<EventRecord> {
    let mut page = seeded(n);
    page.sort_by(|a, b| a.id.cmp(&b.id));
    page.dedup_by(|a, b| a.id == b.id);
    apply(store, WriteMode::Auto, &page).await;
    page
}

fn ids(rows: Vec<quake_store::Earthquake>) -> Vec<String> {
    rows.into_iter().map(|e| e.record.id).collect()
}

both_backends!(
    boxes_across_the_antimeridian_equal_plain_statements,
    async |db: TestDb| {
        let store: Store = db.store().await;
        store_seeded(&store, 3 * KEYSET_SKIP as usize).await;
        let mut rows_seen = 0;
        for orderby in [OrderBy::Time, OrderBy::TimeAsc, OrderBy::Magnitude] {
            for (filter, shape) in [
                // a box across the antimeridian (two boxes for the point index)
                (
                    "box",
                    EventQuery {
                        minlatitude: Some(-30.0),
                        maxlatitude: Some(30.0),
                        minlongitude: Some(160.0),
                        maxlongitude: Some(200.0),
                        ..EventQuery::default()
                    },
                ),
                // a radius across it, and a radius with a box beside it
                (
                    "radius",
                    EventQuery {
                        radius: Some(quake_store::Radius {
                            latitude: 0.0,
                            longitude: 178.0,
                            min_deg: 0.0,
                            max_deg: 12.0,
                        }),
                        ..EventQuery::default()
                    },
                ),
                (
                    "radius and box",
                    EventQuery {
                        radius: Some(quake_store::Radius {
                            latitude: 10.0,
                            longitude: -175.0,
                            min_deg: 1.0,
                            max_deg: 20.0,
                        }),
                        minlatitude: Some(0.0),
                        maxlatitude: Some(40.0),
                        minlongitude: Some(-200.0),
                        maxlongitude: Some(-160.0),
                        ..EventQuery::default()
                    },
                ),
            ] {
                for offset in [1, 2, 40, KEYSET_SKIP + 1] {
                    for limit in [1, 13, 1000] {
                        let q = EventQuery {
                            orderby,
                            limit: Some(limit),
                            offset: Some(offset),
                            ..shape.clone()
                        };
                        let keyset = ids(store.query_events(&q).await.unwrap());
                        let plain =
                            ids(quake_store::testing::query_events_plain_offset(&store, &q)
                                .await
                                .unwrap());
                        assert_eq!(
                            keyset, plain,
                            "{orderby:?} {filter} offset {offset} limit {limit}"
                        );
                        rows_seen += plain.len();
                    }
                }
            }
        }
        assert!(
            rows_seen > 500,
            "the pages compared were mostly empty: {rows_seen}"
        );
    }
);

/// A page read with [`quake_store::PageMarks`] (and the marks it leaves) against the same page read
/// by plain `OFFSET`.
async fn same_page(
    store: &Store,
    marks: &quake_store::PageMarks,
    q: &EventQuery,
    what: &str,
) -> usize {
    let marked = store.query_events_marked(marks, q, None).await.unwrap();
    let plain = quake_store::testing::query_events_plain_offset(store, q)
        .await
        .unwrap();
    assert_eq!(ids(marked.rows), ids(plain.clone()), "{what}");
    plain.len()
}

both_backends!(
    deep_pages_from_marks_equal_plain_statements_while_rows_change,
    async |db: TestDb| {
        let store: Store = db.store().await;
        let postgres = store.backend() == quake_store::Backend::Postgres;
        let stored = store_seeded(&store, 3 * KEYSET_SKIP as usize).await;
        let marks = quake_store::PageMarks::new();
        // A reader paging through, a page asked twice, a page between marks, one asked again.
        for orderby in [OrderBy::TimeAsc, OrderBy::Time, OrderBy::Magnitude] {
            for offset in [1, 501, 1001, 1501, 1501, 2001, 1201, 2501, 1001, 1777] {
                let q = EventQuery {
                    orderby,
                    includedeleted: IncludeDeleted::Yes,
                    limit: Some(500),
                    offset: Some(offset),
                    ..EventQuery::default()
                };
                let n = same_page(&store, &marks, &q, &format!("{orderby:?} {offset}")).await;
                assert!(n > 0, "{orderby:?} {offset}: an empty page");
            }
        }
        assert_eq!(
            !marks.is_empty(),
            postgres,
            "marks are kept on PostgreSQL only"
        );

        // Rows written between two requests of the same deep page: inserted before it,
        // deleted before it, and moved from before it to after it. Each write changes which
        // rows the page holds; the marks of before the write are not used after it.
        let q = EventQuery {
            orderby: OrderBy::TimeAsc,
            limit: Some(300),
            offset: Some(1501),
            ..EventQuery::default()
        };
        // the earliest live rows, all before the page
        let mut early = stored
            .iter()
            .filter(|e| e.status != "deleted")
            .cloned()
            .collect::<Vec<_>>();
        early.sort_by_key(|e| e.time.0);
        for step in 0..6 {
            let before = same_page(&store, &marks, &q, &format!("before write {step}")).await;
            assert_eq!(before, 300);
            let page_before = ids(quake_store::testing::query_events_plain_offset(&store, &q)
                .await
                .unwrap());
            let write = match step % 3 {
                0 => {
                    let mut r = rec(&format!("new{step}"), &[], 1_500_000_000_000 + step, 1, "n");
                    r.latitude = 1.0;
                    r
                }
                1 => {
                    let mut r = early[step as usize].clone();
                    r.status = "deleted".into();
                    r.updated = ms(50);
                    r.content_hash = format!("gone{step}");
                    r
                }
                _ => {
                    let mut r = early[step as usize].clone();
                    r.time = ms(1_700_000_000_000 + step);
                    r.updated = ms(60);
                    r.content_hash = format!("moved{step}");
                    r
                }
            };
            apply(&store, WriteMode::Auto, &[write]).await;
            same_page(&store, &marks, &q, &format!("after write {step}")).await;
            let page_after = ids(quake_store::testing::query_events_plain_offset(&store, &q)
                .await
                .unwrap());
            assert_ne!(page_before, page_after, "write {step} moved the page");
        }

        // An answer read in chunks: each chunk continues after the last row, at the position
        // the first chunk counted; the page after the answer is then read from its marks.
        let first = EventQuery {
            orderby: OrderBy::Time,
            limit: Some(400),
            offset: Some(1001),
            ..EventQuery::default()
        };
        let page = store
            .query_events_marked(&marks, &first, None)
            .await
            .unwrap();
        let mut chunked = ids(page.rows.clone());
        let mut at = page.version.map(|version| quake_store::Position {
            rows_before: 1000 + page.rows.len() as i64,
            version,
        });
        let mut after = page.rows.last().map(quake_store::After::of);
        for _ in 0..2 {
            let q = EventQuery {
                offset: None,
                after: after.clone(),
                ..first.clone()
            };
            let next = store.query_events_marked(&marks, &q, at).await.unwrap();
            at = at.map(|p| quake_store::Position {
                rows_before: p.rows_before + next.rows.len() as i64,
                ..p
            });
            after = next.rows.last().map(quake_store::After::of);
            chunked.extend(ids(next.rows));
        }
        let whole = EventQuery {
            limit: Some(1200),
            ..first.clone()
        };
        let plain = ids(
            quake_store::testing::query_events_plain_offset(&store, &whole)
                .await
                .unwrap(),
        );
        assert_eq!(chunked, plain, "the chunks make the answer");
        let next_page = EventQuery {
            offset: Some(2201),
            ..first.clone()
        };
        let n = same_page(&store, &marks, &next_page, "the page after the chunks").await;
        assert_eq!(n, 400);
    }
);

both_backends!(
    boxes_walked_by_cells_equal_plain_statements,
    async |db: TestDb| {
        let store: Store = db.store().await;
        store_seeded(&store, 3 * KEYSET_SKIP as usize).await;
        let radius = |latitude, longitude, max_deg| quake_store::Radius {
            latitude,
            longitude,
            min_deg: 0.0,
            max_deg,
        };
        // Boxes whose edges lie on cell edges (multiples of 5°) and inside cells, one across
        // the antimeridian, radii (one across it), a radius with a box beside it, a time window.
        let shapes = [
            (
                "box on cell edges",
                Some((-10.0, 10.0, -20.0, 15.0)),
                None,
                None,
            ),
            (
                "box inside cells",
                Some((-7.5, 3.2, 11.0, 12.0)),
                None,
                None,
            ),
            ("box across", Some((-25.0, -14.0, 160.0, 200.0)), None, None),
            (
                "one cell's corner",
                Some((40.0, 40.0, 45.0, 45.0)),
                None,
                None,
            ),
            ("radius", None, Some(radius(-20.0, 30.0, 6.0)), None),
            ("radius across", None, Some(radius(0.0, 178.0, 8.0)), None),
            (
                "radius and box",
                Some((0.0, 40.0, -200.0, -160.0)),
                Some(radius(10.0, -175.0, 9.0)),
                None,
            ),
            (
                "box and time window",
                Some((-30.0, 30.0, -30.0, 30.0)),
                None,
                Some(ms(1_600_000_300_000)),
            ),
        ];
        let mut rows_seen = 0;
        for orderby in [OrderBy::Time, OrderBy::TimeAsc] {
            for includedeleted in [IncludeDeleted::No, IncludeDeleted::Only] {
                for (what, box_, radius, starttime) in &shapes {
                    for offset in [1, 2, 40, KEYSET_SKIP + 1] {
                        for limit in [1, 13, 1000] {
                            let q = EventQuery {
                                orderby,
                                includedeleted,
                                starttime: *starttime,
                                minlatitude: box_.map(|b| b.0),
                                maxlatitude: box_.map(|b| b.1),
                                minlongitude: box_.map(|b| b.2),
                                maxlongitude: box_.map(|b| b.3),
                                radius: *radius,
                                limit: Some(limit),
                                offset: Some(offset),
                                ..EventQuery::default()
                            };
                            let cells =
                                ids(quake_store::testing::query_events_by_cells(&store, &q)
                                    .await
                                    .unwrap());
                            let plain =
                                ids(quake_store::testing::query_events_plain_offset(&store, &q)
                                    .await
                                    .unwrap());
                            assert_eq!(
                                cells, plain,
                                "{orderby:?} {includedeleted:?} {what} offset {offset} limit {limit}"
                            );
                            rows_seen += plain.len();
                        }
                    }
                }
            }
        }
        assert!(
            rows_seen > 1000,
            "the pages compared were mostly empty: {rows_seen}"
        );
    }
);
