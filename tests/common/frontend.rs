//! A small in-test frontend that answers LocalAI's `/api/node/*` routes.
