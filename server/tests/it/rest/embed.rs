//! Resource embedding: many-to-one, one-to-many, many-to-many, one-to-one,
//! `!inner`, hints, spreads, and filters/order/limit on embedded resources.

use serde_json::json;

use super::{Fx, get};

#[tokio::test]
async fn embedding() {
    let fx = Fx::fixture("embed").await;
    fx.run(vec![
        get("many-to-one with column hint", "todos?select=id,owner:users!owner_id(name)&id=in.(1,4)&order=id")
            .is(200, json!([{"id":1,"owner":{"name":"Alice"}},{"id":4,"owner":null}])),
        get("many-to-one via fk column name", "todos?select=id,owner_id(name)&id=eq.3")
            .is(200, json!([{"id":3,"owner_id":{"name":"Bob"}}])),
        get("many-to-one via constraint hint", "todos?select=id,users!todos_reviewer_fk(name)&id=eq.1")
            .is(200, json!([{"id":1,"users":{"name":"Bob"}}])),
        get("one-to-many with order, limit, filter", "users?select=name,todos!owner_id(id,title)&todos.order=id.desc&todos.limit=1&id=eq.1")
            .is(200, json!([{"name":"Alice","todos":[{"id":2,"title":"Write report"}]}])),
        get("one-to-many offset", "users?select=name,todos!owner_id(id)&todos.order=id&todos.offset=1&id=eq.1")
            .is(200, json!([{"name":"Alice","todos":[{"id":2}]}])),
        get("embedded filter keeps parents", "users?select=id,todos!owner_id(id)&todos.done=eq.true&order=id")
            .is(200, json!([{"id":1,"todos":[{"id":2}]},{"id":2,"todos":[]},{"id":3,"todos":[]}])),
        get("!inner filters parents", "users?select=id,todos!owner_id!inner(id)&todos.done=eq.true")
            .is(200, json!([{"id":1,"todos":[{"id":2}]}])),
        get("many-to-many", "todos?select=id,tags(name)&tags.order=id&id=in.(1,2)&order=id")
            .is(200, json!([{"id":1,"tags":[{"name":"urgent"},{"name":"home"}]},{"id":2,"tags":[]}])),
        get("many-to-many reverse !inner", "tags?select=name,todos!inner(id)&order=id&todos.order=id")
            .is(200, json!([{"name":"urgent","todos":[{"id":1}]},{"name":"home","todos":[{"id":1},{"id":3}]}])),
        get("junction one-to-many", "todos?select=id,todo_tags(tag_id)&id=eq.1&todo_tags.order=tag_id")
            .is(200, json!([{"id":1,"todo_tags":[{"tag_id":1},{"tag_id":2}]}])),
        get("one-to-one", "users?select=id,profiles(bio)&id=in.(1,2)&order=id")
            .is(200, json!([{"id":1,"profiles":{"bio":"likes cats"}},{"id":2,"profiles":null}])),
        get("spread", "todos?select=id,...users!owner_id(owner_name:name)&id=in.(1,3)&order=id")
            .is(200, json!([{"id":1,"owner_name":"Alice"},{"id":3,"owner_name":"Bob"}])),
        get("nested", "users?select=name,todos!owner_id(id,tags(name))&id=eq.2")
            .is(200, json!([{"name":"Bob","todos":[{"id":3,"tags":[{"name":"home"}]}]}])),
        get("self reference", "people?select=name,boss:people!manager_id(name)&id=eq.3")
            .is(200, json!([{"name":"Junior","boss":{"name":"Mid"}}])),
        get("embed is null", "todos?select=id,users!owner_id(id)&users=is.null")
            .is(200, json!([{"id":4,"users":null}])),
        get("embed not.is.null + embedded filter", "todos?select=id,users!owner_id(id)&users=not.is.null&users.name=eq.Bob")
            .is(200, json!([{"id":3,"users":{"id":2}}])),
        get("order by a to-one embed", "todos?select=id,users!owner_id(name)&owner_id=not.is.null&order=users(name).desc,id")
            .is(200, json!([{"id":3,"users":{"name":"Bob"}},{"id":1,"users":{"name":"Alice"}},{"id":2,"users":{"name":"Alice"}}])),
        get("embedded or", "users?select=id,todos!owner_id(id)&todos.or=(id.eq.1,id.eq.3)&order=id")
            .is(200, json!([{"id":1,"todos":[{"id":1}]},{"id":2,"todos":[{"id":3}]},{"id":3,"todos":[]}])),
        get("count in embed", "users?select=id,todos!owner_id(count)&order=id")
            .is(200, json!([{"id":1,"todos":[{"count":2}]},{"id":2,"todos":[{"count":1}]},{"id":3,"todos":[{"count":0}]}])),
        get("aliased embed filter path", "users?select=id,mine:todos!owner_id(id)&mine.id=eq.2&id=eq.1")
            .is(200, json!([{"id":1,"mine":[{"id":2}]}])),
        get("star plus embed", "profiles?select=*,users(name)")
            .is(200, json!([{"user_id":1,"bio":"likes cats","users":{"name":"Alice"}}])),
        get("embed with cast and json path", "todos?select=id,users!owner_id(n:name,city:data->address->>city)&id=eq.3")
            .is(200, json!([{"id":3,"users":{"n":"Bob","city":"Berlin"}}])),
        get("ambiguous embed: 300 with hints", "todos?select=id,users(name)").err(300, "PGRST201"),
        get("no relationship", "tags?select=id,users(name)").err(400, "PGRST200"),
        get("unknown hint", "todos?select=id,users!nope(name)").err(400, "PGRST200"),
        get("spread of a to-many", "users?select=id,...todos!owner_id(id)").status(400),
        get("filter on an unselected embed", "users?select=id&todos.id=eq.1").err(400, "PGRST108"),
    ])
    .await;
}
