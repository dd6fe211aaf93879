//! The QuickChat users: the MySQL `users` table of the sample data set, each user with an
//! activity profile that drives how much they chat and call, and the table's CSV export
//! (MySQL `DATETIME` text, `\N` for NULL) — the very text the MySQL loader inserts.

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{DataSetSpec, pick};

/// How active a user is over the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Many messages and calls every day.
    Power,
    /// A steady dozen messages a day.
    Regular,
    /// A few messages, not every day.
    Casual,
    /// Active at first, silent by the end of the period.
    Fading,
    /// Signed up, hardly ever seen.
    Dormant,
}

impl Activity {
    fn pick(rng: &mut ChaCha8Rng) -> Self {
        match rng.random::<f64>() {
            x if x < 0.10 => Activity::Power,
            x if x < 0.40 => Activity::Regular,
            x if x < 0.75 => Activity::Casual,
            x if x < 0.90 => Activity::Fading,
            _ => Activity::Dormant,
        }
    }

    /// Expected messages on day `day` of `days`.
    pub(super) fn messages_per_day(self, day: u32, days: u32) -> f64 {
        match self {
            Activity::Power => 35.0,
            Activity::Regular => 10.0,
            Activity::Casual => 2.0,
            Activity::Fading => 14.0 * (1.0 - 2.0 * f64::from(day) / f64::from(days.max(1))).max(0.0),
            Activity::Dormant => 0.05,
        }
    }

    /// Expected calls started on day `day` of `days`.
    pub(super) fn calls_per_day(self, day: u32, days: u32) -> f64 {
        self.messages_per_day(day, days) / 25.0
    }
}

/// A row of the MySQL `users` table.
#[derive(Debug, Clone)]
pub struct User {
    /// Primary key.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// E-mail as typed at sign-up (case and spaces untidy).
    pub email: String,
    /// Phone number in one of several formats, or none.
    pub phone: Option<String>,
    /// Shown name.
    pub display_name: String,
    /// ISO country code.
    pub country: String,
    /// `active`, `inactive` or `suspended`.
    pub status: String,
    /// Sign-up time.
    pub created_at: DateTime<Utc>,
    /// Last profile change.
    pub updated_at: DateTime<Utc>,
    /// Last login, if any.
    pub last_login_at: Option<DateTime<Utc>>,
    /// How active the user is (drives the messages and calls generated).
    pub(super) activity: Activity,
    /// The UTC hour the user's messages cluster around.
    pub(super) preferred_hour: i64,
}

const FIRST: &[&str] = &[
    "ana", "ben", "chloe", "diego", "emma", "farah", "george", "hana", "ivan", "julia", "kofi", "lena", "mateo",
    "nina", "omar", "priya", "quinn", "rosa", "sam", "tariq", "uma", "victor", "wei", "ximena", "yusuf", "zoe",
];
const LAST: &[&str] = &[
    "silva", "smith", "kumar", "garcia", "müller", "okafor", "tanaka", "rossi", "dubois", "nowak", "kim", "haddad",
];
const DOMAINS: &[&str] = &["gmail.com", "yahoo.com", "outlook.com", "quickchat.io", "proton.me"];
const COUNTRIES: &[&str] = &["US", "IN", "BR", "DE", "GB", "FR", "JP", "NG", "MX", "CA"];
pub(super) fn make_users(
    rng: &mut ChaCha8Rng,
    spec: &DataSetSpec,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<User> {
    (1..=i64::from(spec.users))
        .map(|id| {
            let first = *pick(rng, FIRST);
            let last = *pick(rng, LAST);
            let activity = Activity::pick(rng);
            let created_at = if rng.random::<f64>() < 0.75 {
                start - Duration::seconds(rng.random_range(86_400..365 * 86_400))
            } else {
                start + Duration::seconds(rng.random_range(0..(end - start).num_seconds().max(1)))
            };
            let updated_at = if rng.random::<f64>() < 0.4 {
                created_at
            } else {
                created_at + Duration::seconds(rng.random_range(0..(end - created_at).num_seconds().max(1)))
            };
            let mut email = format!("{first}.{last}{id}@{}", pick(rng, DOMAINS));
            if rng.random::<f64>() < 0.15 {
                email = capitalize(&email);
            }
            if rng.random::<f64>() < 0.05 {
                email = format!("  {email} ");
            }
            let digits = rng.random_range(1_000_000..9_999_999u32);
            let phone = match rng.random_range(0..7) {
                0 => None,
                1 | 2 => Some(format!("+1 (555) {}-{}", digits / 10_000, digits % 10_000)),
                3 | 4 => Some(format!("+44 20 {digits}")),
                _ => Some(format!("555{digits}")),
            };
            let status = match rng.random::<f64>() {
                x if x < 0.94 => "active",
                x if x < 0.98 => "inactive",
                _ => "suspended",
            };
            let preferred_hour = 9 + (rng.random::<f64>() * rng.random::<f64>() * 14.0) as i64 + 4;
            User {
                id,
                username: format!("{first}_{last}{id}"),
                email,
                phone,
                display_name: format!("{} {}", capitalize(first), capitalize(last)),
                country: pick(rng, COUNTRIES).to_string(),
                status: status.to_string(),
                created_at,
                updated_at,
                last_login_at: (activity != Activity::Dormant).then(|| updated_at.max(created_at) + Duration::hours(2)),
                activity,
                preferred_hour: preferred_hour.min(23),
            }
        })
        .collect()
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// MySQL's `DATETIME` text form.
pub fn mysql_datetime(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The columns of the `users` table, in order.
pub const USER_COLUMNS: [&str; 10] = [
    "id",
    "username",
    "email",
    "phone",
    "display_name",
    "country",
    "status",
    "created_at",
    "updated_at",
    "last_login_at",
];

/// A user row as the text a MySQL export holds (`None` is NULL). The CSV export and the MySQL
/// loader both use it, so the two sources hold exactly the same data.
pub fn user_row(users: &[User], index: usize) -> [Option<String>; 10] {
    let user = &users[index];
    // One row as a legacy table holds it: a zero date, which no reader can parse.
    let created_at = if index == users.len() / 2 {
        "0000-00-00 00:00:00".to_string()
    } else {
        mysql_datetime(user.created_at)
    };
    [
        Some(user.id.to_string()),
        Some(user.username.clone()),
        Some(user.email.clone()),
        user.phone.clone(),
        Some(user.display_name.clone()),
        Some(user.country.clone()),
        Some(user.status.clone()),
        Some(created_at),
        Some(mysql_datetime(user.updated_at)),
        user.last_login_at.map(mysql_datetime),
    ]
}

pub(super) fn write_users_csv(users: &[User]) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(USER_COLUMNS).expect("writing to memory");
    for index in 0..users.len() {
        let row = user_row(users, index).map(|cell| cell.unwrap_or_else(|| "\\N".to_string()));
        writer.write_record(&row).expect("writing to memory");
    }
    writer.into_inner().expect("flushing to memory")
}
