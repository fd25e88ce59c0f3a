//! The local stack's cells in moto's DynamoDB: the two tables as `template.yml` defines them,
//! and the registration of a cell (its settings written, its counter kept).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

/// Creates the cell registry (key `cell`) and the tenant→cell map (key `sub`) unless they exist.
pub async fn create_tables(aws: &aws_config::SdkConfig, cells_table: &str, map_table: &str) -> Result<()> {
    let dynamodb = aws_sdk_dynamodb::Client::new(aws);
    for (table, key) in [(cells_table, "cell"), (map_table, "sub")] {
        let created = dynamodb
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(key)
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(key)
                    .key_type(KeyType::Hash)
                    .build()?,
            )
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => anyhow::bail!(
                "creating the DynamoDB table {table}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            ),
        }
    }
    Ok(())
}

/// Writes a cell's settings and state (every field of `fields` but the counter, which starts at
/// zero and is otherwise kept).
pub async fn register(
    aws: &aws_config::SdkConfig,
    cells_table: &str,
    fields: &BTreeMap<String, String>,
) -> Result<()> {
    let dynamodb = aws_sdk_dynamodb::Client::new(aws);
    let cell = fields.get("cell").context("a cell's fields name it")?;
    let mut update = dynamodb
        .update_item()
        .table_name(cells_table)
        .key("cell", AttributeValue::S(cell.clone()));
    let mut sets = vec!["#tenants = if_not_exists(#tenants, :zero)".to_owned()];
    update = update
        .expression_attribute_names("#tenants", "tenants")
        .expression_attribute_values(":zero", AttributeValue::N("0".into()));
    for (i, (name, value)) in fields
        .iter()
        .filter(|(k, _)| *k != "cell" && *k != "tenants")
        .enumerate()
    {
        let value = if name == "capacity" {
            AttributeValue::N(value.clone())
        } else {
            AttributeValue::S(value.clone())
        };
        sets.push(format!("#f{i} = :v{i}"));
        update = update
            .expression_attribute_names(format!("#f{i}"), name)
            .expression_attribute_values(format!(":v{i}"), value);
    }
    update
        .update_expression(format!("SET {}", sets.join(", ")))
        .send()
        .await
        .with_context(|| format!("registering cell {cell} in {cells_table}"))?;
    Ok(())
}

/// Removes a cell from the registry (the local stack's, when fewer cells are asked for).
pub async fn unregister(aws: &aws_config::SdkConfig, cells_table: &str, cell: &str) -> Result<()> {
    aws_sdk_dynamodb::Client::new(aws)
        .delete_item()
        .table_name(cells_table)
        .key("cell", AttributeValue::S(cell.to_owned()))
        .send()
        .await
        .with_context(|| format!("removing cell {cell} from {cells_table}"))?;
    Ok(())
}
