# frozen_string_literal: true

Rails.application.routes.draw do
  root "hello#page"
  get "hello", to: "hello#text", format: false
  get "hello.json", to: "hello#json", format: false
  get "counter", to: "hello#counter"
  post "upload", to: "hello#upload"
  get "readme", to: "hello#readme"

  resources :notes, only: %i[index new create]

  get "events/:token", to: "events#show", as: :events
  post "events/:token/release", to: "events#release", as: :release_events
end
