//! The words of a `sync_runs` row: who asked for a run ([`Trigger`]) and how it stands
//! ([`RunStatus`]). The database and the JSON endpoints keep them as the lower-case words
//! of [`RunStatus::as_str`] and [`Trigger::as_str`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// A word that is not one of an enum's: the text it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownWord {
    pub kind: &'static str,
    pub word: String,
}

impl fmt::Display for UnknownWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}", self.kind, self.word)
    }
}

impl std::error::Error for UnknownWord {}

macro_rules! words {
    ($(#[$doc:meta])* $name:ident, $kind:literal { $($(#[$vdoc:meta])* $variant:ident = $word:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The word stored in the database and shown by the endpoints.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownWord;
            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                match s {
                    $($word => Ok($name::$variant),)+
                    _ => Err(UnknownWord { kind: $kind, word: s.to_owned() }),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownWord;
            fn try_from(s: String) -> Result<Self, UnknownWord> {
                s.parse()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

words! {
    /// How a sync run stands (`sync_runs.status`).
    RunStatus, "run status" {
        /// Started and not finished (or its process died: see [`RunStatus::Abandoned`]).
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        /// Left `running` by a process that stopped; marked by the next run's guard holder.
        Abandoned = "abandoned",
    }
}

words! {
    /// Who asked for a sync (`sync_runs.trigger`).
    Trigger, "trigger" {
        /// The scheduler's tick.
        Scheduled = "scheduled",
        /// `POST /sync`, or an embedder asking for a sync now.
        Manual = "manual",
        /// A command line (`quakesync sync`, `quakesync backfill`).
        Cli = "cli",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(*s));
            assert_eq!(
                serde_json::to_string(s).ok(),
                Some(format!("\"{}\"", s.as_str()))
            );
        }
        for t in Trigger::ALL {
            assert_eq!(t.as_str().parse::<Trigger>(), Ok(*t));
            assert_eq!(*t, t.as_str());
        }
        assert!("done".parse::<RunStatus>().is_err());
        assert_eq!(RunStatus::Failed.to_string(), "failed");
    }
}
