"""Request and response bodies of the API, one module per resource.

Response models read the database rows they show (`model_validate(row)`, with
`from_attributes`), so a column is named once, in its model, and never copied by hand.
"""
