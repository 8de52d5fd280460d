//! Cursor pagination for `submission/list` and `analysis/list` (§10 of the API notes).
//!
//! Lists are newest first. The token names the last id of the page just sent, so deleting or
//! adding items between pages neither repeats nor skips older ones. The token is opaque to
//! clients; they only echo it back as `pagination_next`.

use super::envelope::ApiError;

const TOKEN_PREFIX: &str = "after-";

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    /// `None` on the last page: the reply must then omit the `pagination` key.
    pub(crate) next: Option<String>,
}

/// Cut one page out of `items`, which must be sorted by id, descending.
pub(crate) fn paginate<T>(
    items: Vec<(u64, T)>,
    token: Option<&str>,
    page_size: usize,
) -> Result<Page<T>, ApiError> {
    let page_size = page_size.max(1);
    let after = match token.filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => Some(parse_token(token)?),
    };
    let mut remaining = items
        .into_iter()
        .filter(|(id, _)| after.is_none_or(|after| *id < after))
        .peekable();
    let mut page = Vec::new();
    let mut last_id = None;
    while page.len() < page_size {
        let Some((id, item)) = remaining.next() else {
            break;
        };
        last_id = Some(id);
        page.push(item);
    }
    let next = match (remaining.peek(), last_id) {
        (Some(_), Some(last)) => Some(format!("{TOKEN_PREFIX}{last}")),
        _ => None,
    };
    Ok(Page { items: page, next })
}

fn parse_token(token: &str) -> Result<u64, ApiError> {
    token
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| ApiError::invalid("Invalid parameter pagination_next."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u64) -> Vec<(u64, u64)> {
        (1..=n).rev().map(|id| (id, id)).collect()
    }

    #[test]
    fn pages_walk_the_whole_list_once_and_the_last_has_no_token() {
        let first = paginate(ids(5), None, 2).expect("page 1");
        assert_eq!(first.items, vec![5, 4]);
        let second = paginate(ids(5), first.next.as_deref(), 2).expect("page 2");
        assert_eq!(second.items, vec![3, 2]);
        let third = paginate(ids(5), second.next.as_deref(), 2).expect("page 3");
        assert_eq!(third.items, vec![1]);
        assert_eq!(third.next, None);
    }

    #[test]
    fn an_exactly_full_last_page_has_no_token() {
        let page = paginate(ids(4), None, 4).expect("page");
        assert_eq!(page.items.len(), 4);
        assert_eq!(page.next, None);
        let empty = paginate(ids(0), None, 4).expect("empty");
        assert!(empty.items.is_empty());
        assert_eq!(empty.next, None);
    }

    #[test]
    fn items_added_between_pages_do_not_shift_older_ones() {
        let first = paginate(ids(4), None, 2).expect("page 1");
        let second = paginate(ids(6), first.next.as_deref(), 2).expect("page 2");
        assert_eq!(second.items, vec![2, 1]);
    }

    #[test]
    fn a_garbage_token_is_an_invalid_parameter() {
        let error = paginate(ids(3), Some("garbage"), 2).expect_err("must fail");
        assert_eq!(error.code, 3);
    }
}
