//! `key-value-store` (`kv`): instances of the key-value store and their keys.

use clap::{Args, Subcommand};
use ferrite_types::rest::PropsModify;

use super::{Ctx, Failure, Outcome, emit};
use crate::args::TableOpts;
use crate::table::{Column, Table};

#[derive(Debug, Subcommand)]
pub enum KeyValueStoreCommand {
    /// List the key-value store's instances.
    #[command(visible_alias = "l")]
    List(TableOpts),
    /// Print the keys and values of an instance.
    #[command(visible_alias = "s")]
    Show(KeyValueShow),
    /// Set a key of an instance (no value deletes it); creates the instance.
    #[command(visible_alias = "m")]
    Modify(KeyValueModify),
    /// Delete an instance with all its keys.
    #[command(visible_alias = "d")]
    Delete(KeyValueDelete),
}

#[derive(Debug, Args)]
pub struct KeyValueShow {
    /// The instance.
    pub instance: String,
    #[command(flatten)]
    pub table: TableOpts,
}

#[derive(Debug, Args)]
pub struct KeyValueModify {
    /// The instance.
    pub instance: String,
    /// The key.
    pub key: String,
    /// The value; without one the key is deleted.
    pub value: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeyValueDelete {
    /// The instance.
    pub instance: String,
}

pub fn run(ctx: &Ctx, command: KeyValueStoreCommand) -> Outcome {
    match command {
        KeyValueStoreCommand::List(opts) => {
            let stores = ctx.client.key_value_stores()?;
            if ctx.machine_readable {
                return Ok(ctx.listing_json(&stores.raw));
            }
            let mut table = Table::new(vec![Column::new("Key-value store")]);
            for store in &stores.items {
                table.row(vec![store.name.as_str().into()]);
            }
            emit(&table.render(&ctx.table_style(opts.pastable)));
            Ok(crate::output::Exit::Ok)
        }
        KeyValueStoreCommand::Show(show) => {
            let stores = match ctx.client.key_value_store(&show.instance) {
                Ok(stores) => stores,
                Err(ferrite_client::ClientError::Api { answer, .. }) if answer.status == 404 => {
                    return Err(Failure::not_found(format!(
                        "Key-value store '{}' not found.",
                        show.instance
                    )));
                }
                Err(error) => return Err(error.into()),
            };
            if ctx.machine_readable {
                return Ok(ctx.listing_json(&stores.raw));
            }
            let props = stores.items.first().map(|s| &s.props);
            Ok(ctx.properties(props, show.table.pastable))
        }
        KeyValueStoreCommand::Modify(modify) => {
            let body = match modify.value.filter(|v| !v.is_empty()) {
                Some(value) => PropsModify {
                    override_props: [(modify.key, value)].into_iter().collect(),
                    ..Default::default()
                },
                None => PropsModify {
                    delete_props: vec![modify.key],
                    ..Default::default()
                },
            };
            ctx.one(ctx.client.modify_key_value_store(&modify.instance, &body))
        }
        KeyValueStoreCommand::Delete(delete) => {
            ctx.one(ctx.client.delete_key_value_store(&delete.instance))
        }
    }
}
