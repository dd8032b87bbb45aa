#![doc = include_str!("../README.md")]
// utoipa names the entry `__path_<handler>`, beside the handler; a
// declarative macro cannot build that name, hence a procedural one.

use proc_macro::{Delimiter, Group, Ident, Punct, Spacing, Span, TokenStream, TokenTree};

/// `documented!(create)` or `documented!(tasks::create)` becomes
/// `crate::routes::Documented::new(create, __path_create)`.
#[proc_macro]
pub fn documented(input: TokenStream) -> TokenStream {
    let handler: Vec<TokenTree> = input.into_iter().collect();
    match entry_of(&handler) {
        Some(entry) => constructor(handler, entry),
        None => compile_error("documented! takes the path of a handler, such as `create` or `tasks::create`"),
    }
}

/// The handler's path with its last segment `x` made `__path_x`.
fn entry_of(handler: &[TokenTree]) -> Option<Vec<TokenTree>> {
    let (last, prefix) = handler.split_last()?;
    let TokenTree::Ident(name) = last else {
        return None;
    };
    let mut entry = prefix.to_vec();
    entry.push(TokenTree::Ident(Ident::new(
        &format!("__path_{name}"),
        name.span(),
    )));
    Some(entry)
}

fn constructor(handler: Vec<TokenTree>, entry: Vec<TokenTree>) -> TokenStream {
    let mut arguments = TokenStream::from_iter(handler);
    arguments.extend([TokenTree::Punct(Punct::new(',', Spacing::Alone))]);
    arguments.extend(entry);
    let mut call: TokenStream = "crate::routes::Documented::new".parse().expect("a path parses");
    call.extend([TokenTree::Group(Group::new(Delimiter::Parenthesis, arguments))]);
    call
}

fn compile_error(message: &str) -> TokenStream {
    let mut tokens: TokenStream = "::core::compile_error!".parse().expect("a path parses");
    let text = TokenTree::Literal(proc_macro::Literal::string(message));
    let mut group = Group::new(Delimiter::Parenthesis, TokenStream::from(text));
    group.set_span(Span::call_site());
    tokens.extend([TokenTree::Group(group)]);
    tokens
}
