//! `quickchat-etl generate`: write the sample data set under a folder (local or S3), and
//! load its users into MySQL and its collections into MongoDB when asked.

use crate::catalog::Lake;
use crate::cli::GenerateArgs;
use crate::config::{LakeLocation, Settings};
use crate::error::{Error, Result};
use crate::generate::mongo_load::load_collection;
use crate::generate::streams::stream_files;
use crate::generate::{generate, mysql, write_data, write_file};

/// `quickchat-etl generate`: writes the files under `--out` (a folder, or an S3 URL reached
/// with the same `AWS_*` settings as the lake), loads the users into the configured MySQL
/// with `--load-mysql` and the collections into the configured MongoDB with `--load-mongodb`.
pub async fn run(settings: &Settings, args: GenerateArgs) -> Result<()> {
    let spec = args.data.to_spec();
    let out = args.out.display().to_string();
    let location = LakeLocation::parse(&out, settings.lake.storage_options.clone())?;
    let lake = Lake::new(location.clone());
    if location.is_local() {
        std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&out, e))?;
    }
    if let Some(name) = &args.stream {
        let registry = super::load_registry(settings)?;
        let pipeline = registry.stream(name).ok_or_else(|| {
            let known: Vec<&str> = registry.streams().map(|s| s.name.as_str()).collect();
            Error::Usage(format!("no streaming pipeline `{name}` (known: {})", known.join(", ")))
        })?;
        let files = stream_files(
            pipeline,
            args.events,
            args.events_per_second,
            args.start_time.timestamp_millis(),
            args.data.seed,
        )?;
        for file in files {
            let name = format!("{}.jsonl", file.topic);
            write_file(&lake, &location.root, &name, file.contents).await?;
            println!("wrote {} events to {out}/{name}", file.events);
        }
        return Ok(());
    }
    let data = generate(&spec);
    if args.load_mysql {
        let url = settings
            .mysql_url
            .as_ref()
            .ok_or_else(|| Error::config("--load-mysql needs a MySQL server: pass --mysql-url or set MYSQL_URL"))?;
        mysql::load_users(url, &data.users).await?;
        println!(
            "loaded {} users into MySQL table `users` at {}",
            data.users.len(),
            crate::config::redact_url(url)
        );
    }
    if args.load_mongodb {
        let mongo = settings.mongodb.as_ref().ok_or_else(|| {
            Error::config("--load-mongodb needs a MongoDB server: pass --mongodb-uri or set MONGODB_URI")
        })?;
        for (relative, contents) in &data.files {
            let Some(collection) = relative.strip_prefix("mongo/").and_then(|f| f.strip_suffix(".json")) else {
                continue;
            };
            let loaded = load_collection(mongo, collection, contents).await?;
            println!(
                "loaded {} documents into MongoDB collection {}.{collection} at {} \
                 (left out: {} lines cut short, {} documents exported twice)",
                loaded.documents,
                mongo.database,
                mongo.shown(),
                loaded.not_documents,
                loaded.repeated_ids
            );
        }
    }
    let counts = write_data(&lake, &location.root, data).await?;
    println!("wrote {counts} to {out} (mongo/*.json, mysql/users.csv)");
    Ok(())
}
